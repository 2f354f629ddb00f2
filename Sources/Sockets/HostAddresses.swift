#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// The socket addresses a host name and port stand for.
///
/// An address given as digits is parsed where it is. A name goes to getaddrinfo, which
/// blocks (DNS), so it runs on one of a few resolver threads; a lookup still going at the
/// deadline is left to finish there and its answer dropped. Answers are kept for
/// `cacheSeconds` (curl keeps them 60 s), so a crawl of one host asks DNS once, not once per
/// fetch: lookups queued behind the first look in the cache again before they run.
enum HostAddresses {
    static let cacheSeconds = 30
    static let cacheEntriesMax = 1_024
    private static let cache = Mutex<[String: (addresses: [Address], until: ContinuousClock.Instant)]>([:])
    /// getaddrinfo calls made (the cache's test reads it).
    static let lookupsMade = Atomic<Int>(0)

    struct Address: @unchecked Sendable {
        var family: Int32
        var storage: sockaddr_storage
        var length: socklen_t

        init(family: Int32, storage: sockaddr_storage, length: socklen_t) {
            self.family = family
            self.storage = storage
            self.length = length
        }

        /// From a `sockaddr_in` or `sockaddr_in6`.
        init<Specific>(_ family: Int32, _ specific: Specific) {
            var storage = sockaddr_storage()
            withUnsafeBytes(of: specific) { source in
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: source) }
            }
            self.init(family: family, storage: storage, length: socklen_t(MemoryLayout<Specific>.size))
        }
    }

    static func resolve(_ host: String, port: Int, until deadline: ContinuousClock.Instant) async throws(SocketError) -> [Address] {
        var name = host
        if name.hasPrefix("["), name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
        guard (0...65_535).contains(port) else { throw SocketError("resolve \(host)", .system(EINVAL)) }
        if let address = numeric(name, port: port) { return [address] }
        if let cached = cached(name, port: port) { return cached }
        return try await lookUp(name, port: port, until: deadline)
    }

    /// The addresses of `host` (digits, brackets allowed, or a name looked up on the caller's
    /// thread): for a listener, and a client's first connection, made once.
    static func resolveNow(_ host: String, port: Int) throws(SocketError) -> [Address] {
        var name = host
        if name.hasPrefix("["), name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
        guard (0...65_535).contains(port) else { throw SocketError("listen on \(host):\(port)", .system(EINVAL)) }
        if let address = numeric(name, port: port) { return [address] }
        return try blockingLookUp(name, port: port, operation: "resolve \(host)").get()
    }

    private static func numeric(_ name: String, port: Int) -> Address? {
        let networkPort = in_port_t(UInt16(port).bigEndian)
        var v4 = in_addr()
        if inet_pton(AF_INET, name, &v4) == 1 {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = networkPort
            address.sin_addr = v4
            return Address(AF_INET, address)
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, name, &v6) == 1 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = networkPort
            address.sin6_addr = v6
            return Address(AF_INET6, address)
        }
        return nil
    }

    /// getaddrinfo on a thread of its own, awaited until `deadline`.
    private static func lookUp(_ name: String, port: Int, until deadline: ContinuousClock.Instant) async throws(SocketError) -> [Address] {
        let operation = "resolve \(name)"
        let lookup = PendingLookup()
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<[Address], SocketError>, Never>) in
                lookup.wait(continuation)
                if Task.isCancelled { return lookup.finish(.failure(SocketError(operation, .cancelled))) }
                Resolvers.shared.enqueue(until: deadline) { lookup.finish(cachedOrLookedUp(name, port: port, operation: operation)) }
                lookup.setTimer(Task {
                    guard (try? await Task.sleep(until: deadline, clock: .continuous)) != nil else { return }
                    lookup.finish(.failure(SocketError(operation, .timedOut)))
                })
            }
        } onCancel: {
            lookup.finish(.failure(SocketError(operation, .cancelled)))
        }
        return try result.get()
    }

    /// One lookup's waiter, ended by whichever comes first: the answer, the deadline or a
    /// cancellation. The deadline's timer is cancelled when it is not the first.
    private final class PendingLookup: Sendable {
        private struct State {
            var continuation: CheckedContinuation<Result<[Address], SocketError>, Never>?
            var timer: Task<Void, Never>?
            /// The first result, kept when it came before the waiter (a cancellation can).
            var result: Result<[Address], SocketError>?
        }

        private let state = Mutex(State())

        func wait(_ continuation: CheckedContinuation<Result<[Address], SocketError>, Never>) {
            let early = state.withLock { state -> Result<[Address], SocketError>? in
                if state.result == nil { state.continuation = continuation }
                return state.result
            }
            if let early { continuation.resume(returning: early) }
        }

        func setTimer(_ timer: Task<Void, Never>) {
            let finished = state.withLock { state -> Bool in
                if state.result == nil { state.timer = timer }
                return state.result != nil
            }
            if finished { timer.cancel() }
        }

        func finish(_ result: Result<[Address], SocketError>) {
            let (continuation, timer) = state.withLock { state -> (CheckedContinuation<Result<[Address], SocketError>, Never>?, Task<Void, Never>?) in
                guard state.result == nil else { return (nil, nil) }
                state.result = result
                defer {
                    state.continuation = nil
                    state.timer = nil
                }
                return (state.continuation, state.timer)
            }
            timer?.cancel()
            continuation?.resume(returning: result)
        }
    }

    private static func cached(_ name: String, port: Int) -> [Address]? {
        let key = "\(name) \(port)"
        return cache.withLock { cache in
            guard let entry = cache[key] else { return nil }
            guard ContinuousClock.now < entry.until else {
                cache[key] = nil
                return nil
            }
            return entry.addresses
        }
    }

    private static func cachedOrLookedUp(_ name: String, port: Int, operation: String) -> Result<[Address], SocketError> {
        if let cached = cached(name, port: port) { return .success(cached) }
        let result = blockingLookUp(name, port: port, operation: operation)
        if case .success(let addresses) = result {
            cache.withLock { cache in
                // A full cache starts over rather than tracking ages: names past a thousand
                // are a crawl of many hosts, where each is asked for rarely anyway.
                if cache.count >= cacheEntriesMax { cache.removeAll(keepingCapacity: true) }
                cache["\(name) \(port)"] = (addresses, ContinuousClock.now + .seconds(cacheSeconds))
            }
        }
        return result
    }

    private static func blockingLookUp(_ name: String, port: Int, operation: String) -> Result<[Address], SocketError> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG
        var found: UnsafeMutablePointer<addrinfo>?
        lookupsMade.add(1, ordering: .relaxed)
        let rv = getaddrinfo(name, "\(port)", &hints, &found)
        guard rv == 0 else {
            if rv == EAI_SYSTEM { return .failure(.system(operation)) }
            return .failure(SocketError(operation, .unresolved(String(cString: gai_strerror(rv)))))
        }
        defer { freeaddrinfo(found) }
        var addresses: [Address] = []
        var next = found
        while let info = next {
            if let raw = info.pointee.ai_addr, Int(info.pointee.ai_addrlen) <= MemoryLayout<sockaddr_storage>.size {
                var storage = sockaddr_storage()
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: Int(info.pointee.ai_addrlen))) }
                addresses.append(Address(family: info.pointee.ai_family, storage: storage, length: info.pointee.ai_addrlen))
            }
            next = info.pointee.ai_next
        }
        guard !addresses.isEmpty else { return .failure(SocketError(operation, .unresolved("no address"))) }
        return .success(addresses)
    }
}

/// At most `threads` getaddrinfo calls at once, on threads started as needed and ended when
/// nothing waits: a nameserver that stops answering (glibc tries for 10-30 s) holds those
/// threads, not one per fetch. A lookup whose deadline passed while it queued is skipped (its
/// waiter has timed out already).
final class Resolvers: Sendable {
    static let shared = Resolvers(threads: 8)

    private struct Job {
        var deadline: ContinuousClock.Instant
        var run: @Sendable () -> Void
    }

    private struct State {
        var queue: [Job] = []
        var head = 0
        var running = 0
    }

    private let threads: Int
    private let state = Mutex(State())

    init(threads: Int) {
        self.threads = threads
    }

    func enqueue(until deadline: ContinuousClock.Instant, _ run: @escaping @Sendable () -> Void) {
        let start = state.withLock { state -> Bool in
            state.queue.append(Job(deadline: deadline, run: run))
            guard state.running < threads else { return false }
            state.running += 1
            return true
        }
        if start { Thread.detachNewThread { [self] in work() } }
    }

    private func work() {
        while let job = next() {
            if ContinuousClock.now < job.deadline { job.run() }
        }
    }

    private func next() -> Job? {
        state.withLock { state in
            guard state.head < state.queue.count else {
                state.queue.removeAll()
                state.head = 0
                state.running -= 1
                return nil
            }
            let job = state.queue[state.head]
            state.head += 1
            if state.head >= 1_024 && state.head * 2 >= state.queue.count {
                state.queue.removeFirst(state.head)
                state.head = 0
            }
            return job
        }
    }
}
