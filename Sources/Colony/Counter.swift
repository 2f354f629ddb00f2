import ColonyModel
import ColonyWire
import Foundation
import NNG

/// A cluster counter seen from a client. Every operation is one request, applied atomically
/// by the coordinator.
public struct Counter: Sendable {
    let client: ColonyClient
    public let name: String

    /// The value now (0 for a counter never set).
    public func get() async throws(ColonyError) -> Int64 {
        try await send(.get).value
    }

    /// Adds `delta`; returns the new value.
    @discardableResult
    public func add(_ delta: Int64) async throws(ColonyError) -> Int64 {
        try await send(.add, value: delta).value
    }

    /// Sets the value; returns the previous one.
    @discardableResult
    public func set(_ value: Int64) async throws(ColonyError) -> Int64 {
        try await send(.set, value: value).value
    }

    /// Sets `new` only if the value is `expected`; returns whether it did.
    public func compareAndSet(expected: Int64, new: Int64) async throws(ColonyError) -> Bool {
        try await send(.compareAndSet, value: new, expected: expected).swapped
    }

    private func send(_ op: Colony_V1_CounterRequest.Op, value: Int64 = 0, expected: Int64 = 0) async throws(ColonyError) -> Colony_V1_CounterReply {
        var request = Colony_V1_CounterRequest()
        request.op = op
        request.name = name
        request.value = value
        request.expected = expected
        return try await client.counterRequest(request)
    }
}
