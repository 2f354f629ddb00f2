import ColonyModel
import ColonyWire

/// Where a reader is in one task's output: the offsets of the next bytes wanted per stream.
public struct TaskLogCursor: Sendable, Hashable {
    public var taskID: TaskID
    public var stdout: UInt64
    public var stderr: UInt64

    public init(taskID: TaskID, stdout: UInt64 = 0, stderr: UInt64 = 0) {
        self.taskID = taskID
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// What one read of a task's output brought.
public struct TaskLogRead: Sendable {
    public struct Chunk: Sendable, Equatable {
        public var stream: LogStream
        /// Where `bytes` start in the stream.
        public var offset: UInt64
        /// Bytes before `offset` (from the cursor on) that the coordinator no longer keeps.
        public var dropped: UInt64
        public var bytes: [UInt8]
    }

    public var taskID: TaskID
    /// False: the coordinator knows neither the task nor any output of it.
    public var known: Bool
    /// The task has finished and this read reached the end of its output.
    public var ended: Bool
    public var chunks: [Chunk]
    /// The cursor for the next read.
    public var next: TaskLogCursor
}

extension ColonyClient {
    /// Tasks' live output (exec commands' stdout and stderr, handlers' log lines), from each
    /// cursor on. With `wait`, the coordinator holds the reply (up to 5 s) until one of the
    /// tasks has new output or ends. `streams` empty: both.
    public func logs(of cursors: [TaskLogCursor], streams: [LogStream] = [], wait: Duration = .zero,
                     bytesMax: Int = 0) async throws(ColonyError) -> [TaskLogRead] {
        var request = Colony_V1_LogsRequest()
        request.tasks = cursors.map { cursor in
            var wire = Colony_V1_LogCursor()
            wire.taskID = cursor.taskID
            wire.stdoutOffset = cursor.stdout
            wire.stderrOffset = cursor.stderr
            return wire
        }
        request.streams = streams.map(\.wire)
        request.waitMs = UInt32(clamping: Int((wait / .milliseconds(1)).rounded()))
        request.bytesMax = UInt32(clamping: bytesMax)
        guard case .logsReply(let reply) = try await self.request(.logs(request)) else {
            throw .protocolViolation("the coordinator answered a logs request with something else")
        }
        guard reply.tasks.count == cursors.count else {
            throw .protocolViolation("the coordinator answered a logs request for \(cursors.count) tasks with \(reply.tasks.count)")
        }
        return zip(cursors, reply.tasks).map { cursor, log in
            var next = cursor
            var chunks: [TaskLogRead.Chunk] = []
            for wire in log.chunks {
                guard let stream = LogStream(wire: wire.stream) else { continue }
                let end = wire.offset + UInt64(wire.data.count)
                if stream == .stdout { next.stdout = end } else { next.stderr = end }
                chunks.append(TaskLogRead.Chunk(stream: stream, offset: wire.offset, dropped: wire.dropped, bytes: Array(wire.data)))
            }
            return TaskLogRead(taskID: cursor.taskID, known: log.known, ended: log.ended, chunks: chunks, next: next)
        }
    }

    /// What the coordinator keeps of these tasks' output now, from the start.
    public func logs(of ids: [TaskID]) async throws(ColonyError) -> [TaskLogRead] {
        try await logs(of: ids.map { TaskLogCursor(taskID: $0) })
    }
}
