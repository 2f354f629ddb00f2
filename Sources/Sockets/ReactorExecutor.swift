#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// `SocketReactor`'s thread as an executor: a serial one (an actor may run on it) and a task
/// executor (a task may prefer it).
///
/// Why: a request read on the reactor's thread and answered on Swift's pool costs a wake-up
/// of a pool thread, and the pool's threads then wake each other for every hop (perf counted
/// 18 wake-ups per W2 task in the coordinator, node and client). Work that only reacts to
/// sockets (decode, a short actor call, encode, send) is cheaper run right here, between two
/// waits: a request answered without parking then costs no wake-up besides the socket's.
/// Only short, non-blocking work belongs here: while a job runs no socket is read.
extension SocketReactor: SerialExecutor, TaskExecutor {
    struct Jobs {
        var queue: [UnownedJob] = []
        /// The loop sleeps in epoll_wait: an enqueue wakes it.
        var sleeping = false
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let wake = jobs.withLock { jobs -> Bool in
            jobs.queue.append(job)
            guard jobs.sleeping else { return false }
            jobs.sleeping = false
            return true
        }
        if wake { wakeLoop() }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    public func checkIsolated() {
        precondition(isCurrent, "expected to run on the sockets thread (colony:sockets)")
    }

    /// Whether the caller runs on the reactor's thread.
    public var isCurrent: Bool {
        thread.withLock { thread in thread.map { pthread_equal($0, pthread_self()) != 0 } ?? false }
    }

    func runJob(_ job: UnownedJob) {
        job.runSynchronously(isolatedTo: asUnownedSerialExecutor(), taskExecutor: asUnownedTaskExecutor())
    }
}
