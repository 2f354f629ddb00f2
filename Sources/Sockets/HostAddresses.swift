#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// The socket addresses a host name and port stand for.
///
/// An address given as digits is parsed where it is. A name goes to getaddrinfo, which
/// blocks (DNS), so it runs on a thread of its own; a lookup still going at the deadline is
/// left to finish there and its answer dropped.
enum HostAddresses {
    struct Address: @unchecked Sendable {
        var family: Int32
        var storage: sockaddr_storage
        var length: socklen_t
    }

    static func resolve(_ host: String, port: Int, until deadline: ContinuousClock.Instant) async throws(SocketError) -> [Address] {
        var name = host
        if name.hasPrefix("["), name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
        guard (0...65_535).contains(port) else { throw SocketError("resolve \(host)", .system(EINVAL)) }
        if let address = numeric(name, port: port) { return [address] }
        return try await lookUp(name, port: port, until: deadline)
    }

    private static func numeric(_ name: String, port: Int) -> Address? {
        var storage = sockaddr_storage()
        var v4 = in_addr()
        if inet_pton(AF_INET, name, &v4) == 1 {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr = v4
            withUnsafeBytes(of: address) { source in
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: source) }
            }
            return Address(family: AF_INET, storage: storage, length: socklen_t(MemoryLayout<sockaddr_in>.size))
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, name, &v6) == 1 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = in_port_t(UInt16(port).bigEndian)
            address.sin6_addr = v6
            withUnsafeBytes(of: address) { source in
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: source) }
            }
            return Address(family: AF_INET6, storage: storage, length: socklen_t(MemoryLayout<sockaddr_in6>.size))
        }
        return nil
    }

    /// getaddrinfo on a thread of its own, awaited until `deadline`.
    private static func lookUp(_ name: String, port: Int, until deadline: ContinuousClock.Instant) async throws(SocketError) -> [Address] {
        let operation = "resolve \(name)"
        let outcome = Mutex<CheckedContinuation<Result<[Address], SocketError>, Never>?>(nil)
        let finish: @Sendable (Result<[Address], SocketError>) -> Void = { result in
            outcome.withLock { continuation in
                continuation?.resume(returning: result)
                continuation = nil
            }
        }
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<[Address], SocketError>, Never>) in
                outcome.withLock { $0 = continuation }
                if Task.isCancelled { return finish(.failure(SocketError(operation, .cancelled))) }
                Thread.detachNewThread { finish(blockingLookUp(name, port: port, operation: operation)) }
                Task {
                    try? await Task.sleep(until: deadline, clock: .continuous)
                    finish(.failure(SocketError(operation, .timedOut)))
                }
            }
        } onCancel: {
            finish(.failure(SocketError(operation, .cancelled)))
        }
        return try result.get()
    }

    private static func blockingLookUp(_ name: String, port: Int, operation: String) -> Result<[Address], SocketError> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG
        var found: UnsafeMutablePointer<addrinfo>?
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
