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
// its tasks itself. The pool is never destroyed (its threads end with the process).
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
        std::unique_lock<std::mutex> busy(submit_, std::try_to_lock);
        if (threads <= 1 || n <= 1 || !busy.owns_lock()) {
            for (int64_t i = 0; i < n; ++i) task(i);
            return;
        }
        ensure(threads - 1);
        auto job = std::make_shared<Job>();
        job->task = &task;
        job->n = n;
        job->workers = threads - 1;
        {
            std::lock_guard<std::mutex> lk(mu_);
            current_ = job;
            generation_.fetch_add(1, std::memory_order_release);
        }
        cv_.notify_all();
        work(*job);
        for (int spin = 0; job->done.load(std::memory_order_acquire) < n; ++spin) {
            if (spin < 4000) neurosim::cpu_relax();
            else std::this_thread::yield();
        }
        {
            std::lock_guard<std::mutex> lk(mu_);
            current_.reset();
        }
        if (job->error) std::rethrow_exception(job->error);
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

    struct Job {
        const std::function<void(int64_t)>* task = nullptr;
        int64_t n = 0;
        int workers = 0;
        std::atomic<int64_t> next{0}, done{0};
        std::mutex error_mu;
        std::exception_ptr error;
    };

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

    std::mutex submit_, mu_;
    std::condition_variable cv_;
    std::atomic<uint64_t> generation_{0};
    std::shared_ptr<Job> current_;
    int count_ = 0;
};

}  // namespace neurosim
