import Colony
import ColonyModel
import Foundation

/// One line on stderr when a client that waits for results would otherwise wait in silence:
/// no node is connected, or none of the connected nodes can take the task (its handler, a
/// label it requires, the pool it asks for).
enum WaitingNotice {
    /// After `delay`, says once why the work may not run (nothing when it can).
    static func watch(_ colony: ColonyClient, url: String, handler: String, options: TaskOptions,
                      delay: Duration = .seconds(2)) async {
        try? await Task.sleep(for: delay)
        if Task.isCancelled { return }
        guard let status = try? await colony.status(), !Task.isCancelled else { return }
        guard let reason = status.whyNoNodeCanTake(handler: handler, options: options) else { return }
        printError("colony: \(status.nodes.isEmpty ? "no node is connected to \(url)" : reason); waiting")
    }

    /// Runs `body` with the notice watching beside it; the notice stops when `body` ends.
    static func around<T: Sendable>(_ colony: ColonyClient, url: String, handler: String, options: TaskOptions,
                                    _ body: @Sendable @escaping () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { await watch(colony, url: url, handler: handler, options: options); return nil }
            group.addTask { try await body() }
            while let next = try await group.next() {
                if let value = next {
                    group.cancelAll()
                    return value
                }
            }
            throw CancellationError()
        }
    }
}
