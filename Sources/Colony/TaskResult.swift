import ColonyModel
import ColonyWire
import Foundation

/// The outcome of a task as a client sees it.
public struct TaskResult: Sendable, Equatable {
    public let id: TaskID
    public let succeeded: Bool
    /// The handler's output (JSON for Colony's handlers) when it succeeded.
    public let output: [UInt8]
    /// Why it failed, when it did.
    public let error: String
    /// What kind of failure it was (nil when it succeeded or was cancelled, or when a node too
    /// old to say ran it).
    public let failure: FailureKind?
    /// The node that ran the last attempt.
    public let node: String
    public let attempt: UInt32
    public let runMicros: UInt64
    /// The task ended by cancellation.
    public let cancelled: Bool

    init(id: TaskID, succeeded: Bool, output: [UInt8], error: String, failure: FailureKind?, node: String, attempt: UInt32,
         runMicros: UInt64, cancelled: Bool) {
        self.id = id
        self.succeeded = succeeded
        self.output = output
        self.error = error
        self.failure = failure
        self.node = node
        self.attempt = attempt
        self.runMicros = runMicros
        self.cancelled = cancelled
    }

    init(wire: Colony_V1_TaskResult) {
        id = wire.id
        succeeded = wire.ok
        output = Array(wire.output)
        error = wire.error
        failure = wire.ok || wire.cancelled ? nil : FailureKind(wire: wire.failure)
        node = wire.node
        attempt = wire.attempt
        runMicros = wire.runMicros
        cancelled = wire.cancelled
    }

    /// The output decoded from JSON; throws `ColonyError.taskFailed` if the task failed.
    public func value<T: Decodable>(as type: T.Type = T.self) throws(ColonyError) -> T {
        guard succeeded else { throw .taskFailed(id: id, reason: error, node: node, failure: cancelled ? .cancelled : failure ?? .error) }
        do {
            return try JSONDecoder().decode(T.self, from: Data(output))
        } catch {
            throw .badOutput(id: id, reason: "not JSON for \(T.self): \(error)")
        }
    }

    /// The output as UTF-8 text.
    public var outputText: String { String(decoding: output, as: UTF8.self) }
}
