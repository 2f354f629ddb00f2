import ColonyModel
import ColonyWire
import Foundation
import NNG
import Synchronization

extension NodeAgent {
    // MARK: Running a task

    /// Stops `task` with "timed out after X s" once its timeout has passed, if it has one.
    static func watchdog(for task: Colony_V1_Task, stop: StopSignal) -> Task<Void, Never>? {
        guard task.timeoutMs > 0 else { return nil }
        let limit = Duration.milliseconds(Int(task.timeoutMs))
        let seconds = Double(task.timeoutMs) / 1000
        return Task {
            try? await Task.sleep(for: limit)
            if !Task.isCancelled {
                stop.stop(reason: "timed out after \(formatSeconds(seconds)) s", kind: .failureTimeout)
            }
        }
    }

    /// Runs one task in this process (in a worker of the node's thread or io slots, or in a
    /// process-pool child). Never throws: every failure becomes a failed result with a
    /// one-line reason. A stop (cancellation from the coordinator, the task's timeout, a
    /// drain) cancels the calling task; a thread cannot be preempted, so a handler that never
    /// checks for cancellation holds its slot until it returns (its result is then replaced
    /// by the stop's reason).
    static func execute(_ task: Colony_V1_Task, registry: HandlerRegistry, nodeName: String, outputBytesMax: Int,
                        stop: StopSignal, poolKind: TaskPool,
                        output: (@Sendable (Colony_V1_OutputChunk) -> Void)? = nil, subtasks: SubtaskLink? = nil) async -> Colony_V1_TaskResult {
        var result = Colony_V1_TaskResult()
        result.id = task.id
        result.attempt = task.attempt
        result.node = nodeName
        let clock = ContinuousClock()
        let start = clock.now
        guard let handler = registry[task.handler] else {
            result.ok = false
            result.error = HandlerError.unknownHandler(task.handler, node: nodeName, known: registry.names).description
            result.failure = .failureUnknownHandler
            return result
        }
        var context = TaskContext(taskID: task.id, attempt: task.attempt, nodeName: nodeName,
                                  dependencyOutputs: task.dependencies.mapValues { Array($0) }, pool: poolKind)
        context.output = output.map { TaskOutputSink(taskID: task.id, attempt: task.attempt, deliver: $0) }
        context.resources = task.assignedResources
        context.jobID = task.jobID
        context.subtasks = subtasks
        // Inline, in the caller's task: a stop cancels that task (see ThreadSlots), and a
        // handler that never suspends never leaves its thread.
        let outcome: Result<[UInt8], any Error>
        do { outcome = .success(try await handler.run(Array(task.input), context: context)) } catch { outcome = .failure(error) }
        if let (reason, kind) = stop.stopped {
            result.ok = false
            result.error = reason
            result.failure = kind
        } else {
            switch outcome {
            case .success(let output):
                if output.count > outputBytesMax {
                    result.ok = false
                    result.error = "output of \(output.count) bytes exceeds the limit of \(outputBytesMax) bytes"
                    result.failure = .failureRefused
                } else {
                    result.ok = true
                    result.output = Data(output)
                    result.counterOps = context.recorder.recorded.map { change in
                        var op = Colony_V1_CounterOp()
                        op.name = change.name
                        op.delta = change.delta
                        return op
                    }
                }
            case .failure(let error):
                result.ok = false
                result.error = String(describing: error)
                result.failure = .failureError
            }
        }
        let elapsed = clock.now - start
        result.runMicros = elapsed.inMicroseconds
        subtasks?.ended(task: task.id)
        return result
    }
}
