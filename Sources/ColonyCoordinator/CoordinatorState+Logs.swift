import ColonyCore
import ColonyModel

/// Tasks' live output: what nodes send on their pulls goes into `taskLogs`; readers
/// (`colony logs`) get it from an offset, and a follower waits (parked) for more.
extension CoordinatorState {
    /// Where a reader is in one task's log.
    struct LogCursor: Sendable {
        var taskID: TaskID
        var offsets: [LogStream: UInt64]
    }

    /// What a reader gets of one task.
    struct LogView: Sendable {
        var taskID: TaskID
        /// The coordinator knows the task or has output of it.
        var known: Bool
        /// The task has finished (or is forgotten) and the slices reach the end of its log.
        var ended: Bool
        var slices: [(stream: LogStream, slice: TaskLogs.Slice)]
    }

    struct ParkedLogRead {
        var continuation: CheckedContinuation<[LogView], Never>
        var cursors: [LogCursor]
        var streams: [LogStream]
        var bytesMax: Int
        var deadline: Double
    }

    /// Output of running tasks from a node's pull. Output of tasks the coordinator does not
    /// know is dropped (a node cannot fill the logs with made-up tasks).
    func appendOutput(_ chunks: [(taskID: TaskID, attempt: UInt32, stream: LogStream, offset: UInt64, bytes: [UInt8])]) {
        guard !chunks.isEmpty else { return }
        for chunk in chunks where core.knows(chunk.taskID) {
            taskLogs.append(taskID: chunk.taskID, attempt: chunk.attempt, stream: chunk.stream, offset: chunk.offset, bytes: chunk.bytes)
        }
        if !parkedLogReads.isEmpty { answerParkedLogReads(now: now) }
    }

    /// The tasks' logs from the cursors: at once when there is something to say (new bytes,
    /// an ended or unknown task) or `waitSeconds` is 0, else when there is or at the deadline.
    func logs(_ cursors: [LogCursor], streams: [LogStream], bytesMax: Int, waitSeconds: Double) async -> [LogView] {
        let views = logViews(cursors, streams: streams, bytesMax: bytesMax)
        if waitSeconds <= 0 || closed || Self.worthAnswering(views) { return views }
        let deadline = now + waitSeconds
        return await withCheckedContinuation { continuation in
            parkedLogReads.append(ParkedLogRead(continuation: continuation, cursors: cursors, streams: streams, bytesMax: bytesMax,
                                                deadline: deadline))
        }
    }

    /// Answers the parked reads that have something to say or whose deadline is past
    /// (`.infinity`: all of them).
    func answerParkedLogReads(now: Double) {
        guard !parkedLogReads.isEmpty else { return }
        var kept: [ParkedLogRead] = []
        for parked in parkedLogReads {
            let views = logViews(parked.cursors, streams: parked.streams, bytesMax: parked.bytesMax)
            if parked.deadline <= now || Self.worthAnswering(views) {
                parked.continuation.resume(returning: views)
            } else {
                kept.append(parked)
            }
        }
        parkedLogReads = kept
    }

    private static func worthAnswering(_ views: [LogView]) -> Bool {
        views.contains { !$0.known || $0.ended || $0.slices.contains { !$0.slice.bytes.isEmpty || $0.slice.dropped > 0 } }
    }

    private func logViews(_ cursors: [LogCursor], streams: [LogStream], bytesMax: Int) -> [LogView] {
        var budget = bytesMax
        return cursors.map { cursor in
            let finished: Bool = switch core.taskInfo(cursor.taskID)?.phase {
            case .succeeded?, .failed?, .cancelled?, nil: true
            case .waiting?, .queued?, .running?: false
            }
            var view = LogView(taskID: cursor.taskID, known: core.knows(cursor.taskID) || taskLogs.knows(cursor.taskID), ended: false, slices: [])
            guard view.known else { return view }
            var caughtUp = true
            for stream in streams {
                guard let slice = taskLogs.read(taskID: cursor.taskID, stream: stream, from: cursor.offsets[stream] ?? 0,
                                                bytesMax: max(0, budget)) else { continue }
                budget -= slice.bytes.count
                if slice.offset + UInt64(slice.bytes.count) < slice.end { caughtUp = false }
                view.slices.append((stream, slice))
            }
            view.ended = finished && caughtUp
            return view
        }
    }
}
