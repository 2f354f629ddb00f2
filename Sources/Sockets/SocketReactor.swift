#if canImport(Glibc)
import Glibc
#endif
import Foundation
import CSockets
import Synchronization

/// One thread that waits on epoll for the sockets of plain-http fetches and of `colony://`
/// connections and resumes the Swift task waiting on each (or reads a watched connection
/// itself), so that many connections wait at once without holding a thread.
///
/// Why not nng's HTTP client for plain http: each of its steps (resolve, connect, write,
/// read, close) crosses three or four of nng's threads, and at 400 fetches at once those
/// wake-ups were half of a node's CPU (docs/BENCHMARKS.md, W8). Here a step that can go on
/// at once does so on the caller's thread; one that must wait costs one wake-up of this
/// thread and one resume. HTTPS stays with nng (its TLS).
///
/// A wait may end `ready` without the socket being ready (an event meant for an earlier
/// wait on the same descriptor): callers retry their call and wait again on EAGAIN.
///
/// The thread is also an executor (`ReactorExecutor.swift`): work that answers what the
/// sockets bring runs on it, between two waits, instead of waking a thread of Swift's pool.
public final class SocketReactor: @unchecked Sendable {
    public static let shared = SocketReactor()

    enum Readiness: Sendable {
        case ready, timedOut, cancelled
        /// epoll refused the descriptor (an errno value).
        case failed(Int32)
    }

    private struct Waiter {
        var token: UInt64
        var deadline: ContinuousClock.Instant?
        var continuation: CheckedContinuation<Readiness, Never>
    }

    private struct State {
        var waiters: [Int32: Waiter] = [:]
        /// Descriptors watched for as long as they are open: their handler runs on this
        /// thread whenever they are readable (see `watch`).
        var watched: [Int32: @Sendable () -> Void] = [:]
        /// The waiters' deadlines, earliest first; an entry whose waiter is gone (resumed,
        /// cancelled) stays until it comes first or the heap is rebuilt.
        var deadlines = DeadlineHeap()
        /// Descriptors added to the epoll set (each is armed one-shot per wait).
        var added: Set<Int32> = []
        /// When the loop's current epoll_wait ends on its own; nil: not before an event.
        var loopWakes: ContinuousClock.Instant?
    }

    private let epoll: Int32
    private let wakeFD: Int32
    private let state = Mutex(State())
    /// Jobs enqueued on the executor, and whether the loop sleeps in epoll_wait (an enqueue
    /// must wake it then, and only then).
    let jobs = Mutex(Jobs())
    /// The loop's thread, for the executor's isolation check.
    let thread = Mutex<pthread_t?>(nil)
    /// Tells a wait's own entries from a later wait's on the same descriptor.
    private let nextToken = Atomic<UInt64>(0)

    private init() {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        precondition(epoll >= 0 && wakeFD >= 0, "cannot create an epoll set: \(String(cString: strerror(errno)))")
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = wakeFD
        _ = epoll_ctl(epoll, EPOLL_CTL_ADD, wakeFD, &event)
        let thread = Thread { [self] in loop() }
        thread.name = "colony:sockets"
        thread.start()
    }

    /// Waits until `fd` is readable (`EPOLLIN`) or writable (`EPOLLOUT`), `deadline` passes
    /// (nil: none, as for a connection waiting for its peer's next message) or the task is
    /// cancelled.
    func wait(_ fd: Int32, for events: UInt32, until deadline: ContinuousClock.Instant?) async -> Readiness {
        let token = nextToken.add(1, ordering: .relaxed).newValue
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Readiness, Never>) in
                enum Step { case now(Readiness), arm(add: Bool, wakeLoop: Bool, replaced: Waiter?) }
                let step = state.withLock { state -> Step in
                    if Task.isCancelled { return .now(.cancelled) }
                    if let deadline, deadline <= .now { return .now(.timedOut) }
                    // One wait per descriptor: a second one (a misuse) ends the first rather
                    // than leaving it waiting for ever.
                    let replaced = state.waiters.updateValue(Waiter(token: token, deadline: deadline, continuation: continuation), forKey: fd)
                    let add = state.added.insert(fd).inserted
                    guard let deadline else { return .arm(add: add, wakeLoop: false, replaced: replaced) }
                    state.deadlines.push(DeadlineHeap.Entry(deadline: deadline, fd: fd, token: token))
                    if state.deadlines.count > 64 && state.deadlines.count > 4 * state.waiters.count {
                        state.deadlines = DeadlineHeap(state.waiters.compactMap { waiter in
                            waiter.value.deadline.map { DeadlineHeap.Entry(deadline: $0, fd: waiter.key, token: waiter.value.token) }
                        })
                    }
                    // The loop must wake earlier than it planned only for an earlier deadline.
                    let wakeLoop = state.loopWakes.map { deadline < $0 } ?? true
                    if wakeLoop { state.loopWakes = deadline }
                    return .arm(add: add, wakeLoop: wakeLoop, replaced: replaced)
                }
                switch step {
                case .now(let readiness):
                    continuation.resume(returning: readiness)
                case .arm(let add, let wakeLoop, let replaced):
                    replaced?.continuation.resume(returning: .cancelled)
                    var event = epoll_event()
                    event.events = events | EPOLLONESHOT.rawValue | EPOLLRDHUP.rawValue
                    event.data.fd = fd
                    if epoll_ctl(epoll, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &event) != 0 {
                        let code = errno
                        let waiter = state.withLock { state -> Waiter? in
                            if add { state.added.remove(fd) }
                            guard let waiter = state.waiters[fd], waiter.token == token else { return nil }
                            state.waiters[fd] = nil
                            return waiter
                        }
                        waiter?.continuation.resume(returning: .failed(code))
                        return
                    }
                    if wakeLoop { _ = eventfd_write(wakeFD, 1) }
                }
            }
        } onCancel: {
            let waiter = state.withLock { state -> Waiter? in
                guard let waiter = state.waiters[fd], waiter.token == token else { return nil }
                state.waiters[fd] = nil
                return waiter
            }
            waiter?.continuation.resume(returning: .cancelled)
        }
    }

    /// Runs `readable` on the reactor's thread each time `fd` has data (or its peer closed or
    /// failed), until `forget(fd)`. Why not a wait: a connection that reads on this thread and
    /// resumes its requesters itself costs one thread wake-up per message, not two (this
    /// thread's, then the reading task's). `readable` must not block: it reads until EAGAIN.
    /// No one-shot `wait` may be made on a watched descriptor.
    func watch(_ fd: Int32, readable: @escaping @Sendable () -> Void) throws(SocketError) {
        let add = state.withLock { state -> Bool in
            state.watched[fd] = readable
            return state.added.insert(fd).inserted
        }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
        event.data.fd = fd
        if epoll_ctl(epoll, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &event) != 0 {
            let code = errno
            state.withLock { state in
                state.watched[fd] = nil
                if add { state.added.remove(fd) }
            }
            throw .system("watch a connection", code)
        }
    }

    /// Takes `fd` out of the epoll set before it is closed (its number may be reused at once);
    /// a wait on it still in progress (a misuse) ends cancelled, a watch ends.
    func forget(_ fd: Int32) {
        let (added, waiter) = state.withLock { state in
            state.watched[fd] = nil
            return (state.added.remove(fd) != nil, state.waiters.removeValue(forKey: fd))
        }
        if added { _ = epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nil) }
        waiter?.continuation.resume(returning: .cancelled)
    }

    /// Wakes the loop out of epoll_wait.
    func wakeLoop() {
        _ = eventfd_write(wakeFD, 1)
    }

    private func loop() {
        thread.withLock { $0 = pthread_self() }
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        var due: [(CheckedContinuation<Readiness, Never>, Readiness)] = []
        var readable: [@Sendable () -> Void] = []
        var batch: [UnownedJob] = []
        while true {
            let planned = state.withLock { state -> Int32 in
                // The first live deadline (entries of waiters gone are dropped on the way).
                while let first = state.deadlines.first, state.waiters[first.fd]?.token != first.token { state.deadlines.pop() }
                let earliest = state.deadlines.first?.deadline
                state.loopWakes = earliest
                guard let earliest else { return -1 }
                let left = earliest - .now
                if left <= .zero { return 0 }
                let (seconds, attoseconds) = left.components
                if seconds >= Int64(Int32.max / 1_000) { return Int32.max }
                return Int32(clamping: seconds * 1_000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
            }
            // Jobs waiting: look at the sockets without sleeping, then run them.
            let timeout = jobs.withLock { jobs -> Int32 in
                if !jobs.queue.isEmpty { return 0 }
                jobs.sleeping = true
                return planned
            }
            let count = epoll_wait(epoll, &events, Int32(events.count), timeout)
            jobs.withLock { $0.sleeping = false }
            state.withLock { state in
                if count > 0 {
                    for event in events[0..<Int(count)] {
                        let fd = event.data.fd
                        if fd == wakeFD {
                            var value: eventfd_t = 0
                            _ = eventfd_read(wakeFD, &value)
                        } else if let handler = state.watched[fd] {
                            readable.append(handler)
                        } else if let waiter = state.waiters.removeValue(forKey: fd) {
                            due.append((waiter.continuation, .ready))
                        }
                    }
                }
                let now = ContinuousClock.now
                while let first = state.deadlines.first, first.deadline <= now {
                    state.deadlines.pop()
                    if let waiter = state.waiters[first.fd], waiter.token == first.token {
                        state.waiters[first.fd] = nil
                        due.append((waiter.continuation, .timedOut))
                    }
                }
            }
            for (continuation, readiness) in due { continuation.resume(returning: readiness) }
            due.removeAll(keepingCapacity: true)
            for handler in readable { handler() }
            readable.removeAll(keepingCapacity: true)
            // What was enqueued until now; jobs these enqueue run on the next turn, after a
            // look at the sockets, so a busy executor never starves them.
            jobs.withLock { swap(&batch, &$0.queue) }
            for job in batch { runJob(job) }
            batch.removeAll(keepingCapacity: true)
        }
    }
}
