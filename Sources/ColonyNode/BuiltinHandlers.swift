import ColonyModel
import Foundation

/// `echo`: returns its input unchanged (the no-op task of the benchmarks).
public enum EchoHandler {
    public static let name = "echo"
    public static var handler: AnyTaskHandler {
        AnyTaskHandler(name: name) { input, _ in input }
    }
}

/// `sleep`: sleeps for its input, a number of seconds, and returns it.
public struct SleepHandler: TaskHandler {
    public static let name = "sleep"
    /// It only waits: hundreds of sleeps share a node's threads.
    public static let defaultPool = TaskPool.io
    public init() {}
    public func run(_ seconds: Double, context: TaskContext) async throws -> Double {
        // Duration.seconds traps beyond about 1.7e20 s: a huge input would take the node down.
        guard (try? SecondsRange.wait.check(seconds, "")) != nil else {
            throw ValidationFailure("sleep takes a number of seconds from 0 to \(Int(SecondsRange.wait.most)), got \(seconds)")
        }
        try await Task.sleep(for: .seconds(seconds))
        return seconds
    }
}

/// `primes`: counts the primes in [lo, hi) by trial division (deliberately naive CPU work).
public struct PrimesHandler: TaskHandler {
    public static let name = "primes"

    /// A half-open range of integers: `{"lo": 0, "hi": 100000}`, no other keys.
    public struct Range: Codable, Sendable, Equatable {
        public var lo: Int
        public var hi: Int

        enum CodingKeys: String, CodingKey, CaseIterable { case lo, hi }

        public init(lo: Int, hi: Int) {
            self.lo = lo
            self.hi = hi
        }

        public init(from decoder: any Decoder) throws {
            let fields = try decoder.strictContainer(keyedBy: CodingKeys.self)
            lo = try fields.decode(Int.self, forKey: .lo)
            hi = try fields.decode(Int.self, forKey: .hi)
        }
    }

    public init() {}

    public func run(_ range: Range, context: TaskContext) async throws -> Int {
        guard range.lo <= range.hi else { throw ValidationFailure("primes needs lo <= hi, got lo=\(range.lo) hi=\(range.hi)") }
        return Self.countPrimes(in: range.lo..<range.hi)
    }

    /// The loop itself, public so that benchmarks run the very same code serially.
    public static func countPrimes(in range: Swift.Range<Int>) -> Int {
        var count = 0
        for n in range where isPrime(n) { count += 1 }
        return count
    }

    @inline(__always)
    static func isPrime(_ n: Int) -> Bool {
        if n < 2 { return false }
        if n < 4 { return true }
        if n % 2 == 0 { return false }
        var d = 3
        while d * d <= n {
            if n % d == 0 { return false }
            d += 2
        }
        return true
    }
}

/// `fail`: always throws, with its input (a string) as the reason. For tests and demos of
/// failure handling.
public struct FailHandler: TaskHandler {
    public static let name = "fail"
    public init() {}
    public func run(_ reason: String, context: TaskContext) async throws -> String {
        throw ValidationFailure(reason)
    }
}

/// `crash`: ends its process with `fatalError(input)`. Runs only in the process pool (where it
/// costs one child) and refuses in the thread pool, where it would take the node down.
/// For tests and demos of crash isolation.
public struct CrashHandler: TaskHandler {
    public static let name = "crash"
    public static let defaultPool = TaskPool.process
    public init() {}
    public func run(_ message: String, context: TaskContext) async throws -> String {
        guard context.pool == .process else { throw ValidationFailure("crash runs only in the process pool") }
        fatalError(message)
    }
}

/// `allocate`: allocates and touches its input, a number of bytes, then returns it. Runs only
/// in the process pool; shows `--child-memory-limit` at work.
public struct AllocateHandler: TaskHandler {
    public static let name = "allocate"
    public static let defaultPool = TaskPool.process
    public init() {}
    public func run(_ bytes: Int, context: TaskContext) async throws -> Int {
        guard context.pool == .process else { throw ValidationFailure("allocate runs only in the process pool") }
        guard bytes >= 0 else { throw ValidationFailure("allocate takes a number of bytes >= 0") }
        // Filled with ones, so every page is really written (not just reserved).
        let block = [UInt8](repeating: 1, count: bytes)
        return withExtendedLifetime(block) { block.count }
    }
}

/// An error whose description is exactly its message.
public struct ValidationFailure: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

/// `count`: adds 1 to a cluster counter `times` times (applied with the task's success) and
/// returns `times`. The seed's shared-counter example, and benchmark W4.
public struct CountHandler: TaskHandler {
    public static let name = "count"

    /// `{"counter": "x", "times": 100}`, no other keys.
    public struct Input: Codable, Sendable, Equatable {
        public var counter: String
        public var times: Int

        enum CodingKeys: String, CodingKey, CaseIterable { case counter, times }

        public init(counter: String, times: Int) {
            self.counter = counter
            self.times = times
        }

        public init(from decoder: any Decoder) throws {
            let fields = try decoder.strictContainer(keyedBy: CodingKeys.self)
            counter = try fields.decode(String.self, forKey: .counter)
            times = try fields.decode(Int.self, forKey: .times)
        }
    }

    public init() {}

    public func run(_ input: Input, context: TaskContext) async throws -> Int {
        guard input.times >= 0, input.times <= 10_000_000 else { throw ValidationFailure("count takes times from 0 to 10000000") }
        let counter = context.counter(input.counter)
        for _ in 0..<input.times { counter.add(1) }
        return input.times
    }
}

/// `collect`: returns the outputs of its dependencies (`after:`) as a JSON array, in
/// dependency-id order. Shows how a handler reads what its dependencies produced.
public enum CollectHandler {
    public static let name = "collect"
    public static var handler: AnyTaskHandler {
        AnyTaskHandler(name: name) { _, context in
            let parts = context.dependencyOutputs.keys.sorted().map { context.dependencyOutputs[$0]! }
            var output: [UInt8] = [UInt8(ascii: "[")]
            for (index, part) in parts.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                output += part.isEmpty ? Array("null".utf8) : part
            }
            output.append(UInt8(ascii: "]"))
            return output
        }
    }
}
