import ColonyCore
import ColonyModel
import ColonyWire
import Foundation

/// The wire side of tasks' live output: chunks in a node's pull, LogsRequest -> LogsReply.
extension RequestHandler {
    /// Most tasks one LogsRequest may name.
    static let logTasksPerRequestMax = 1000
    /// Most bytes of one LogsReply (and its default).
    static let logReplyBytesMax = 8 << 20
    static let logReplyBytesDefault = 1 << 20

    static func outputChunks(_ chunks: [Colony_V1_OutputChunk]) -> [(taskID: TaskID, attempt: UInt32, stream: LogStream, offset: UInt64, bytes: [UInt8])] {
        chunks.compactMap { chunk in
            guard let stream = LogStream(wire: chunk.stream) else { return nil }
            return (chunk.taskID, chunk.attempt, stream, chunk.offset, Array(chunk.data))
        }
    }

    func answerLogs(_ request: Colony_V1_LogsRequest, waitSecondsMax: Double) async throws(CoordinatorCore.Refusal) -> Colony_V1_Envelope.OneOf_Body {
        guard request.tasks.count <= Self.logTasksPerRequestMax else {
            throw .invalidArgument("a logs request names at most \(Self.logTasksPerRequestMax) tasks, got \(request.tasks.count)")
        }
        var streams: [LogStream] = []
        for wire in request.streams {
            guard let stream = LogStream(wire: wire) else { throw .invalidArgument("unknown output stream \(wire.rawValue)") }
            if !streams.contains(stream) { streams.append(stream) }
        }
        if streams.isEmpty { streams = LogStream.allCases }
        let bytesMax = request.bytesMax == 0 ? Self.logReplyBytesDefault : min(Int(request.bytesMax), Self.logReplyBytesMax)
        let cursors = request.tasks.map {
            CoordinatorState.LogCursor(taskID: $0.taskID, offsets: [.stdout: $0.stdoutOffset, .stderr: $0.stderrOffset])
        }
        let wait = min(Double(request.waitMs) / 1000, waitSecondsMax)
        var reply = Colony_V1_LogsReply()
        reply.tasks = await state.logs(cursors, streams: streams, bytesMax: bytesMax, waitSeconds: wait).map { view in
            var log = Colony_V1_TaskLog()
            log.taskID = view.taskID
            log.known = view.known
            log.ended = view.ended
            log.chunks = view.slices.map { stream, slice in
                var chunk = Colony_V1_OutputChunk()
                chunk.taskID = view.taskID
                chunk.stream = stream.wire
                chunk.offset = slice.offset
                chunk.dropped = slice.dropped
                chunk.data = .init(slice.bytes)
                return chunk
            }
            return log
        }
        return .logsReply(reply)
    }
}

