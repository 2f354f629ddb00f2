import ColonyModel
import ColonyWire
import Foundation
import Synchronization

/// What a handler is given besides its input.
public struct TaskContext: Sendable {
    /// The task's id on the coordinator.
    public let taskID: UInt64
    /// 1 for the first attempt, 2 for the first retry, ...
    public let attempt: UInt32
    /// The node running it.
    public let nodeName: String
    /// Raw outputs of the task's dependencies (`after:`), by task id.
    public let dependencyOutputs: [UInt64: [UInt8]]
    /// The pool it runs in: `.thread` or `.io` (in the node's process) or `.process` (in a child).
    public let pool: TaskPool
    /// The named resources the coordinator gave this attempt (`gpus` with the ids it may
    /// use); empty when it asked for none.
    public internal(set) var resources: [AssignedResource] = []
    /// The job it belongs to (0 when unknown, e.g. a handler called directly): tasks it
    /// submits join it.
    public internal(set) var jobID: JobID = 0
    /// How it submits tasks and waits for them (nil: it cannot, e.g. in the process pool).
    var subtasks: SubtaskLink?
    let recorder: CounterRecorder
    /// Where live output goes while the attempt runs (nil: nowhere, e.g. a handler called directly).
    var output: TaskOutputSink?

    public init(taskID: UInt64, attempt: UInt32, nodeName: String, dependencyOutputs: [UInt64: [UInt8]] = [:], pool: TaskPool = .thread) {
        self.pool = pool
        self.taskID = taskID
        self.attempt = attempt
        self.nodeName = nodeName
        self.dependencyOutputs = dependencyOutputs
        self.recorder = CounterRecorder()
    }

    /// A cluster counter. Changes made here are applied by the coordinator together with
    /// this attempt's successful result, so a retried task never counts twice and a failed
    /// attempt counts nothing.
    public func counter(_ name: String) -> TaskCounter {
        TaskCounter(name: name, recorder: recorder)
    }

    /// The output of dependency `id`, decoded from JSON.
    public func dependencyResult<T: Decodable>(_ id: UInt64, as type: T.Type = T.self) throws -> T {
        guard let bytes = dependencyOutputs[id] else {
            throw ValidationFailure("task \(taskID) has no dependency \(id)")
        }
        return try JSONDecoder().decode(T.self, from: Data(bytes))
    }

    /// Streams `line` to the coordinator while the task runs, on the task's stderr stream
    /// (`colony logs TASK_ID` shows it). Logs are bounded (the latest 64 KiB per task are
    /// kept) and best effort; the task's result is unaffected.
    public func log(_ line: String) {
        output?.write(Array((line.hasSuffix("\n") ? line : line + "\n").utf8), to: .stderr)
    }

    /// Throws `CancellationError` if the task was cancelled (e.g. the node shuts down).
    /// Long-running handlers call it now and then: in the thread pool, timeouts and
    /// cancellations are cooperative (a thread cannot be killed). In the process pool the
    /// child running the task is killed instead.
    public func checkCancellation() throws {
        try Task.checkCancellation()
    }
}

/// A named piece of work that nodes run: a `Codable` input in, a `Codable` output out.
///
/// ```swift
/// struct Square: TaskHandler {
///     static let name = "square"
///     func run(_ input: Int, context: TaskContext) async throws -> Int { input * input }
/// }
/// ```
/// Inputs and outputs travel as JSON. A handler that throws fails its task with the error's
/// description; it never takes the node down.
public protocol TaskHandler: HandlerSignature {
    // Restated so that `run`'s signature is enough to infer them.
    associatedtype Input
    associatedtype Output
    /// The pool its tasks run in unless they ask for one: `.thread` (the default),
    /// `.process` for work that may crash, leak or need killing, or `.io` for work that
    /// mostly waits (it holds no thread while it waits; on a node without io slots it runs
    /// on threads).
    static var defaultPool: TaskPool { get }
    func run(_ input: Input, context: TaskContext) async throws -> Output
}

extension TaskHandler {
    public static var defaultPool: TaskPool { .thread }
}

/// A handler with its types erased to bytes, as the node stores and runs it.
public struct AnyTaskHandler: Sendable {
    public let name: String
    /// Where its tasks run unless they ask otherwise.
    public let defaultPool: TaskPool
    let body: @Sendable ([UInt8], TaskContext) async throws -> [UInt8]

    public init<H: TaskHandler>(_ handler: H) {
        name = H.name
        defaultPool = H.defaultPool == .automatic ? .thread : H.defaultPool
        body = { bytes, context in
            let input: H.Input
            do {
                input = try JSONDecoder().decode(H.Input.self, from: Data(bytes))
            } catch {
                throw HandlerError.badInput(handler: H.name, expected: String(describing: H.Input.self), reason: describeDecodingError(error))
            }
            let output = try await handler.run(input, context: context)
            return Array(try JSONEncoder().encode(output))
        }
    }

    /// A handler working on raw bytes (no JSON step), e.g. `echo`.
    public init(name: String, defaultPool: TaskPool = .thread, raw: @escaping @Sendable ([UInt8], TaskContext) async throws -> [UInt8]) {
        self.name = name
        self.defaultPool = defaultPool == .automatic ? .thread : defaultPool
        body = raw
    }

    public func run(_ input: [UInt8], context: TaskContext) async throws -> [UInt8] {
        try await body(input, context)
    }
}

/// Failures the node itself reports for a task.
public enum HandlerError: Error, Sendable, CustomStringConvertible {
    case unknownHandler(String, node: String, known: [String])
    case badInput(handler: String, expected: String, reason: String)

    public var description: String {
        switch self {
        case .unknownHandler(let name, let node, let known):
            "unknown handler '\(name)' on node \(node) (it has: \(known.joined(separator: ", ")))"
        case .badInput(let handler, let expected, let reason):
            "bad input for handler '\(handler)': expected JSON for \(expected): \(reason)"
        }
    }
}

func describeDecodingError(_ error: any Error) -> String {
    guard let decoding = error as? DecodingError else { return "\(error)" }
    switch decoding {
    case .dataCorrupted(let c): return c.debugDescription
    case .keyNotFound(let key, _): return "missing key '\(key.stringValue)'"
    case .typeMismatch(let type, let c): return "expected \(type) at \(path(c.codingPath))"
    case .valueNotFound(let type, let c): return "missing \(type) at \(path(c.codingPath))"
    @unknown default: return "\(error)"
    }
}

private func path(_ keys: [any CodingKey]) -> String {
    keys.isEmpty ? "top level" : keys.map(\.stringValue).joined(separator: ".")
}

/// The handlers a node can run, by name.
public struct HandlerRegistry: Sendable {
    private var handlers: [String: AnyTaskHandler] = [:]
    /// Whether `exec` really runs commands here (process-pool children get the same setting).
    public private(set) var allowsExec = false

    public init(_ handlers: [AnyTaskHandler] = []) {
        for handler in handlers { register(handler) }
    }

    /// Adds or replaces a handler.
    public mutating func register(_ handler: AnyTaskHandler) {
        handlers[handler.name] = handler
    }

    public mutating func register<H: TaskHandler>(_ handler: H) {
        register(AnyTaskHandler(handler))
    }

    public subscript(name: String) -> AnyTaskHandler? { handlers[name] }

    public var names: [String] { handlers.keys.sorted() }

    /// Handlers whose tasks go to the process pool unless they ask otherwise.
    public var processDefaultNames: [String] { handlers.values.filter { $0.defaultPool == .process }.map(\.name).sorted() }

    /// Handlers whose tasks go to the io pool unless they ask otherwise.
    public var ioDefaultNames: [String] { handlers.values.filter { $0.defaultPool == .io }.map(\.name).sorted() }

    /// Colony's built-in handlers: echo, sleep, primes, fail, count, collect, crash and
    /// allocate (process pool only), fetch, and exec (refusing).
    public static var builtIn: HandlerRegistry {
        var registry = HandlerRegistry()
        registry.register(EchoHandler.handler)
        registry.register(SleepHandler())
        registry.register(PrimesHandler())
        registry.register(FailHandler())
        registry.register(CountHandler())
        registry.register(CollectHandler.handler)
        registry.register(CrashHandler())
        registry.register(AllocateHandler())
        registry.register(FetchHandler())
        registry.register(ExecHandler(allowed: false).anyHandler)
        return registry
    }

    /// The built-ins with `exec` enabled (`colony node --allow-exec`).
    public static var builtInWithExec: HandlerRegistry {
        var registry = builtIn
        registry.register(ExecHandler(allowed: true).anyHandler)
        registry.allowsExec = true
        return registry
    }

    /// The built-ins plus `extra` (which win on a name clash).
    public static func builtIn(plus extra: [AnyTaskHandler], allowExec: Bool = false) -> HandlerRegistry {
        var registry = allowExec ? builtInWithExec : builtIn
        for handler in extra { registry.register(handler) }
        return registry
    }
}

/// A counter as a handler sees it: changes are recorded and travel with the result.
public struct TaskCounter: Sendable {
    public let name: String
    let recorder: CounterRecorder

    /// Adds `delta` when the attempt succeeds.
    public func add(_ delta: Int64) {
        recorder.add(name, delta)
    }
}

/// The counter changes of one attempt, merged by name.
final class CounterRecorder: Sendable {
    private let changes = Mutex<[String: Int64]>([:])

    func add(_ name: String, _ delta: Int64) {
        changes.withLock { $0[name, default: 0] &+= delta }
    }

    var recorded: [(name: String, delta: Int64)] {
        changes.withLock { $0.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } }
    }
}
