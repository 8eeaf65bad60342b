// The one thread pool of neurosim's C++ kernels (chip_models._kernels' layer calls, and
// neurosim._snn's parallel_for, neurosim/cpp/parallel.h; each extension module has its own
// instance). Worker threads are created once (lazily, on
// the first call that asks for them) and reused by every call, so a layer call costs a wake-up,
// not a thread creation. run(n, threads, task) runs task(0) ... task(n-1) on the calling thread
// and up to threads - 1 workers and returns when all n are done. Tasks are handed out by an
// atomic counter, so which thread runs which task varies, but callers give every task disjoint
// outputs: results do not depend on the schedule.
//
// Workers spin for 100 µs after a job (the next layer call usually follows within that) and then
// sleep on a condition variable. Each job's counters live in a shared Job object, so a worker
// that wakes late only sees a finished job and never calls its task. When another thread is
// already running a job on the pool (two Python threads with the GIL released), the caller runs
// its tasks itself. The pool is never destroyed (its threads end with the process). start(n,
// workers, task) / finish(job) split run in two for work that runs beside the caller (the SNN
// chain of chip_models, whose helpers start at once while the caller runs other layers).
//
// fork(): only the forking thread exists in the child, and a copied mutex may be locked forever.
// A pthread_atfork child handler therefore gives the child a fresh pool (the old one is leaked),
// whose workers are started again on the child's first multi-threaded call.
#pragma once
#include <neurosim/simd.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace neurosim {

class ThreadPool {
public:
    static ThreadPool& instance() {
        static const bool registered = [] {
            pthread_atfork(nullptr, nullptr, [] { current() = new ThreadPool(); });
            return true;
        }();
        (void)registered;
        return *current();
    }

    void run(int64_t n, int threads, const std::function<void(int64_t)>& task) {
        if (threads <= 1 || n <= 1 || busy_.exchange(true, std::memory_order_acquire)) {
            for (int64_t i = 0; i < n; ++i) task(i);
            return;
        }
        auto job = submit(n, threads - 1, &task);
        finish(job);
    }

    // The same split in two, for work that runs beside the caller: start(n, workers, task) hands
    // task(0) ... task(n-1) to up to `workers` pool threads and returns at once; finish(job) runs
    // the tasks no worker has claimed yet on the calling thread and waits until all are done
    // (rethrowing a task's exception). Every started job must be finished. When the pool is busy
    // (another job runs), start returns a job that no worker takes: finish runs all of it.
    struct Job;
    std::shared_ptr<Job> start(int64_t n, int workers, std::function<void(int64_t)> task) {
        if (workers < 1 || n < 1 || busy_.exchange(true, std::memory_order_acquire)) {
            auto job = std::make_shared<Job>();
            job->owned = std::move(task);
            job->task = &job->owned;
            job->n = n;
            return job;  // (workers 0: finish runs it all; busy_ is not ours)
        }
        auto owned = std::make_shared<std::function<void(int64_t)>>(std::move(task));
        auto job = submit(n, workers, owned.get());
        job->owned_ptr = std::move(owned);
        return job;
    }
    void finish(const std::shared_ptr<Job>& job) {
        work(*job);
        for (int spin = 0; job->done.load(std::memory_order_acquire) < job->n; ++spin) {
            if (spin < 4000) neurosim::cpu_relax();
            else std::this_thread::yield();
        }
        if (job->workers > 0) {
            {
                std::lock_guard<std::mutex> lk(mu_);
                current_.reset();
            }
            busy_.store(false, std::memory_order_release);
        }
        if (job->error) std::rethrow_exception(job->error);
    }

    // Wakes up to `workers` pool threads (starting them if needed) so that they spin, ready for a
    // job that comes within SPIN_US: the wake-up of a sleeping thread (tens of µs on a virtual
    // machine) then overlaps the caller's own preparation. Does nothing while a job owns the workers.
    void wake(int workers) {
        if (workers < 1 || busy_.exchange(true, std::memory_order_acquire)) return;
        try {
            ensure(workers);
        } catch (...) {
            busy_.store(false, std::memory_order_release);
            throw;
        }
        {
            std::lock_guard<std::mutex> lk(mu_);
            current_.reset();  // (no job: the woken workers go back to spinning)
            generation_.fetch_add(1, std::memory_order_release);
        }
        cv_.notify_all();
        busy_.store(false, std::memory_order_release);
    }

    int workers() {
        std::lock_guard<std::mutex> lk(mu_);
        return static_cast<int>(count_);
    }

private:
    static ThreadPool*& current() {
        static ThreadPool* pool = new ThreadPool();  // leaked on purpose: detached workers outlive static destructors
        return pool;
    }

    static constexpr int SPIN_US = 100;  // a worker spins this long after a job before it sleeps

public:
    struct Job {
        const std::function<void(int64_t)>* task = nullptr;
        int64_t n = 0;
        int workers = 0;  // pool threads that may take its tasks (0: not handed to the pool)
        std::atomic<int64_t> next{0}, done{0};
        std::mutex error_mu;
        std::exception_ptr error;
        std::function<void(int64_t)> owned;                     // start's task (a job no worker takes)
        std::shared_ptr<std::function<void(int64_t)>> owned_ptr;  // start's task (handed to the pool)
    };

private:
    // hands task(0..n-1) to `workers` pool threads (the caller owns busy_, released here if no
    // thread can be started)
    std::shared_ptr<Job> submit(int64_t n, int workers, const std::function<void(int64_t)>* task) {
        try {
            ensure(workers);
        } catch (...) {
            busy_.store(false, std::memory_order_release);
            throw;
        }
        auto job = std::make_shared<Job>();
        job->task = task;
        job->n = n;
        job->workers = workers;
        {
            std::lock_guard<std::mutex> lk(mu_);
            current_ = job;
            generation_.fetch_add(1, std::memory_order_release);
        }
        cv_.notify_all();
        return job;
    }

    static void work(Job& job) {
        for (;;) {
            const int64_t i = job.next.fetch_add(1, std::memory_order_relaxed);
            if (i >= job.n) return;
            try {
                (*job.task)(i);
            } catch (...) {
                std::lock_guard<std::mutex> lk(job.error_mu);
                if (!job.error) job.error = std::current_exception();
            }
            job.done.fetch_add(1, std::memory_order_acq_rel);
        }
    }

    void ensure(int want) {
        std::lock_guard<std::mutex> lk(mu_);
        while (count_ < want) {
            const int id = count_++;
            std::thread([this, id] { loop(id); }).detach();
        }
    }

    void loop(int id) {
        uint64_t seen = generation_.load(std::memory_order_acquire);
        for (;;) {
            const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(SPIN_US);
            while (generation_.load(std::memory_order_acquire) == seen) {
                for (int i = 0; i < 16; ++i) neurosim::cpu_relax();
                if (std::chrono::steady_clock::now() >= until) break;
            }
            std::shared_ptr<Job> job;
            {
                std::unique_lock<std::mutex> lk(mu_);
                cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
                seen = generation_.load(std::memory_order_acquire);
                job = current_;
            }
            if (job && id < job->workers) work(*job);
        }
    }

    std::atomic<bool> busy_{false};  // a job (run's or start's) owns the workers
    std::mutex mu_;
    std::condition_variable cv_;
    std::atomic<uint64_t> generation_{0};
    std::shared_ptr<Job> current_;
    int count_ = 0;
};

}  // namespace neurosim
