import Glibc

/// Runs a call that may never return (nng 1.5.2's `nng_close`) on a thread of its own and
/// waits for it at most a bound; the thread is left behind when the bound passes.
enum BoundedCall {
    /// What the caller and the thread share; the last of the two to let go frees it.
    private final class Shared {
        let work: () -> Void
        let done = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

        init(_ work: @escaping () -> Void) {
            self.work = work
            sem_init(done, 0, 0)
        }

        deinit {
            sem_destroy(done)
            done.deallocate()
        }
    }

    /// True when `work` returned within `limit`.
    static func run(waitingAtMost limit: Duration, _ work: @escaping () -> Void) -> Bool {
        let shared = Shared(work)
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        defer { pthread_attr_destroy(&attributes) }
        var thread = pthread_t()
        let argument = Unmanaged.passRetained(shared).toOpaque()
        let started = pthread_create(&thread, &attributes, { argument in
            let shared = Unmanaged<Shared>.fromOpaque(argument!).takeRetainedValue()
            shared.work()
            sem_post(shared.done)
            return nil
        }, argument)
        guard started == 0 else {
            // No thread: run it here.
            Unmanaged<Shared>.fromOpaque(argument).release()
            work()
            return true
        }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let (seconds, attoseconds) = limit.components
        var nanoseconds = Int(now.tv_nsec) + Int(attoseconds / 1_000_000_000)
        var deadline = timespec(tv_sec: now.tv_sec + Int(seconds) + nanoseconds / 1_000_000_000, tv_nsec: 0)
        nanoseconds %= 1_000_000_000
        deadline.tv_nsec = nanoseconds
        while sem_timedwait(shared.done, &deadline) != 0 {
            if errno != EINTR { return false }
        }
        return true
    }
}
