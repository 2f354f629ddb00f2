import ColonyModel
import ColonyWire
import Foundation
import NNG

/// Collects the results of a set of tasks and resumes one waiter when all are in.
final class Gather: @unchecked Sendable {
    private let lock = NSLock()
    private let ids: [TaskID]
    private let distinctCount: Int
    private var results: [TaskID: TaskResult] = [:]
    private var failure: ColonyError?
    private var continuation: CheckedContinuation<[TaskResult], any Error>?
    private var done = false

    init(ids: [TaskID]) {
        self.ids = ids
        distinctCount = Set(ids).count
        results.reserveCapacity(ids.count)
    }

    var isComplete: Bool {
        lock.lock()
        defer { lock.unlock() }
        return done || results.count == distinctCount
    }

    func deliver(_ result: TaskResult) {
        lock.lock()
        results[result.id] = result
        let finished = !done && results.count == distinctCount
        resumeIfNeeded(finished: finished)
    }

    func fail(_ error: ColonyError) {
        lock.lock()
        if !done && failure == nil { failure = error }
        resumeIfNeeded(finished: !done)
    }

    // Called with the lock held; releases it.
    private func resumeIfNeeded(finished: Bool) {
        guard finished, let continuation else {
            lock.unlock()
            return
        }
        done = true
        self.continuation = nil
        let outcome = outcomeLocked()
        lock.unlock()
        continuation.resume(with: outcome)
    }

    private func outcomeLocked() -> Result<[TaskResult], any Error> {
        if let failure { return .failure(failure) }
        return .success(ids.map { results[$0]! })
    }

    func wait() async throws(ColonyError) -> [TaskResult] {
        do {
            return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[TaskResult], any Error>) in
                lock.lock()
                if done || failure != nil || results.count == distinctCount {
                    done = true
                    let outcome = outcomeLocked()
                    lock.unlock()
                    continuation.resume(with: outcome)
                } else {
                    self.continuation = continuation
                    lock.unlock()
                }
            }
        } catch let error as ColonyError {
            throw error
        } catch {
            throw .transport("\(error)")
        }
    }
}
