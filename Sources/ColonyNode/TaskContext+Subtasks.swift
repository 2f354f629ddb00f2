import Colony
import ColonyModel
import Foundation

// Tasks submitting tasks: a dynamic task graph from inside a handler.
extension TaskContext {
    /// Queues `tasks` into this task's job; returns their ids in order. Only handlers in the
    /// thread or io pool can submit (a process-pool child has no connection of its own).
    /// A retried task submits its tasks again.
    public func submit(_ tasks: [TaskSubmission]) async throws(ColonyError) -> [TaskID] {
        let link = try requireSubtasks()
        let ids = try await link.client().submit(tasks, job: jobID == 0 ? .new : .existing(jobID)).ids
        link.noteSubmitted(ids, by: taskID)
        return ids
    }

    /// Waits for the results of `ids` (in order, failed ones included), giving this task's
    /// slots back while it waits so that the tasks it waits for can run even on this node
    /// when every slot holds a waiting task (see `SubtaskLink`). Its named resources stay
    /// held: a task that needs one of them waits until this task ends.
    public func results(of ids: [TaskID]) async throws(ColonyError) -> [TaskResult] {
        let link = try requireSubtasks()
        let client = try link.client()
        link.noteAwaited(ids, by: taskID)
        return try await link.whileWaiting(task: taskID, pool: pool) { () async throws(ColonyError) -> [TaskResult] in
            try await client.results(of: ids)
        }
    }

    /// Runs `handler` over `inputs` as tasks of this task's job and returns their outputs in
    /// order, waiting without holding a slot; throws the first failure (in input order).
    public func map<Input: Encodable & Sendable, Output: Decodable>(_ handler: String, _ inputs: [Input], as type: Output.Type = Output.self,
                                                                    options: TaskOptions = TaskOptions()) async throws(ColonyError) -> [Output] {
        var submissions: [TaskSubmission] = []
        submissions.reserveCapacity(inputs.count)
        for input in inputs {
            do {
                submissions.append(TaskSubmission(handler: handler, input: Array(try JSONEncoder().encode(input)), options: options))
            } catch {
                throw .badInput("cannot encode an input of \(handler) as JSON: \(error)")
            }
        }
        var outputs: [Output] = []
        outputs.reserveCapacity(inputs.count)
        for result in try await results(of: try await submit(submissions)) { outputs.append(try result.value(as: Output.self)) }
        return outputs
    }

    /// `map` with a handler type: `try await context.map(Square.self, [1, 2, 3])`.
    public func map<H: HandlerSignature>(_ handler: H.Type, _ inputs: [H.Input]) async throws(ColonyError) -> [H.Output] {
        try await map(H.name, inputs, as: H.Output.self)
    }

    private func requireSubtasks() throws(ColonyError) -> SubtaskLink {
        guard let subtasks else {
            throw .badInput("task \(taskID) cannot submit tasks: only handlers in a node's thread or io pool can (this one runs in the \(pool) pool)")
        }
        return subtasks
    }
}
