import ColonyWire
import Foundation
import Synchronization

/// Where one attempt's live output goes: an exec command's stdout and stderr as it reads
/// them, and a handler's log lines. It numbers the bytes of each stream (the offsets let the
/// coordinator see what was dropped on the way) and hands chunks to `deliver`: the node's
/// outbox, or in a process-pool child the pipe to its node.
final class TaskOutputSink: Sendable {
    let taskID: UInt64
    let attempt: UInt32
    private let deliver: @Sendable (Colony_V1_OutputChunk) -> Void
    /// Bytes written so far to stdout and to stderr.
    private let written = Mutex<(stdout: UInt64, stderr: UInt64)>((0, 0))

    init(taskID: UInt64, attempt: UInt32, deliver: @escaping @Sendable (Colony_V1_OutputChunk) -> Void) {
        self.taskID = taskID
        self.attempt = attempt
        self.deliver = deliver
    }

    func write(_ bytes: some Collection<UInt8>, to stream: Colony_V1_OutputStream) {
        guard !bytes.isEmpty else { return }
        let offset = written.withLock { counts -> UInt64 in
            if stream == .stdout {
                defer { counts.stdout += UInt64(bytes.count) }
                return counts.stdout
            }
            defer { counts.stderr += UInt64(bytes.count) }
            return counts.stderr
        }
        var chunk = Colony_V1_OutputChunk()
        chunk.taskID = taskID
        chunk.attempt = attempt
        chunk.stream = stream
        chunk.offset = offset
        chunk.data = Data(bytes)
        deliver(chunk)
    }
}

/// Output of the node's running tasks waiting for the next pull.
///
/// Bounded twice: per task and stream it keeps the latest `streamBytesMax` (the coordinator
/// keeps no more than that either, so older bytes would only be dropped there), and a pull
/// takes at most `pullBytesMax`. Chunks of one stream that follow each other are merged, so
/// a command printing line by line costs one chunk per pull, not one per line.
final class TaskOutputOutbox: Sendable {
    static let streamBytesMax = 64 << 10
    static let pullBytesMax = 1 << 20

    private struct Key: Hashable {
        var taskID: UInt64
        var attempt: UInt32
        var stream: Colony_V1_OutputStream
    }

    private struct State {
        var pending: [Key: Colony_V1_OutputChunk] = [:]
        /// Keys in the order their output first arrived (fairness between tasks).
        var order: [Key] = []
    }

    private let state = Mutex(State())
    /// Called when output arrives in an empty outbox (the node's pull loop then looks at it).
    private let arrived: @Sendable () -> Void

    init(arrived: @escaping @Sendable () -> Void) {
        self.arrived = arrived
    }

    var isEmpty: Bool { state.withLock { $0.pending.isEmpty } }

    func add(_ chunk: Colony_V1_OutputChunk) {
        guard !chunk.data.isEmpty else { return }
        let key = Key(taskID: chunk.taskID, attempt: chunk.attempt, stream: chunk.stream)
        let wasEmpty = state.withLock { state -> Bool in
            let wasEmpty = state.pending.isEmpty
            if var held = state.pending[key], held.offset + UInt64(held.data.count) == chunk.offset {
                held.data.append(chunk.data)
                state.pending[key] = Self.trimmed(held)
            } else {
                // A gap (bytes dropped) or the first chunk: the older bytes go on their own.
                if state.pending[key] == nil { state.order.append(key) }
                state.pending[key] = Self.trimmed(chunk)
            }
            return wasEmpty
        }
        if wasEmpty { arrived() }
    }

    /// Output for one pull: whole entries, oldest first, within `pullBytesMax` (an entry is
    /// never larger than `streamBytesMax`, so at least one always fits).
    func take() -> [Colony_V1_OutputChunk] {
        state.withLock { state in
            var taken: [Colony_V1_OutputChunk] = []
            var bytes = 0
            var index = 0
            while index < state.order.count {
                let key = state.order[index]
                guard let chunk = state.pending[key] else {
                    index += 1
                    continue
                }
                if !taken.isEmpty && bytes + chunk.data.count > Self.pullBytesMax { break }
                taken.append(chunk)
                bytes += chunk.data.count
                state.pending[key] = nil
                index += 1
            }
            state.order.removeFirst(index)
            return taken
        }
    }

    /// Tasks whose output waits here (their results must not overtake it).
    var pendingTaskIDs: Set<UInt64> {
        state.withLock { Set($0.pending.keys.map(\.taskID)) }
    }

    private static func trimmed(_ chunk: Colony_V1_OutputChunk) -> Colony_V1_OutputChunk {
        guard chunk.data.count > streamBytesMax else { return chunk }
        var kept = chunk
        let excess = chunk.data.count - streamBytesMax
        kept.data = Data(chunk.data.suffix(streamBytesMax))
        kept.offset += UInt64(excess)
        return kept
    }
}
