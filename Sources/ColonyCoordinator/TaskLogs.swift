import ColonyModel

/// Tasks' live output (exec commands' stdout and stderr, handler log lines) as the
/// coordinator keeps it for `colony logs`: in memory, bounded, apart from the scheduling core.
///
/// Each task has two streams; each keeps its latest `streamBytesMax` bytes (a ring: older
/// bytes are dropped as new ones come). All logs together hold at most `totalBytesMax`: past
/// it, the logs of the tasks that began printing first are emptied first. At most `tasksMax`
/// logs are known; past that the oldest are forgotten. A position in a stream (an offset)
/// counts every byte ever appended to it, kept or not, so a reader asking from an offset
/// whose bytes are gone learns how many it missed.
public struct TaskLogs: Sendable {
    public struct Bounds: Sendable, Equatable {
        /// Bytes kept per task and stream (the latest ones).
        public var streamBytesMax = 64 << 10
        /// Bytes kept for all tasks together.
        public var totalBytesMax = 64 << 20
        /// Tasks whose logs are known (an emptied log still costs a little).
        public var tasksMax = 100_000

        public init() {}
    }


    struct Ring: Sendable {
        /// The kept bytes: the last `kept.count` of the `end` appended so far.
        var kept: [UInt8] = []
        var end: UInt64 = 0
        /// The attempt whose bytes come now, and the next byte of it expected (its offset).
        var attempt: UInt32 = 0
        var attemptOffset: UInt64 = 0

        var start: UInt64 { end - UInt64(kept.count) }
    }

    struct Log: Sendable {
        var stdout = Ring()
        var stderr = Ring()
        /// The latest attempt that sent output.
        var attempt: UInt32 = 0

        subscript(stream: LogStream) -> Ring {
            get { stream == .stdout ? stdout : stderr }
            set { if stream == .stdout { stdout = newValue } else { stderr = newValue } }
        }
    }

    /// What a reader gets of one stream.
    public struct Slice: Sendable, Equatable {
        /// Where `bytes` start in the stream.
        public var offset: UInt64
        /// Bytes between the offset asked for and `offset` that are no longer kept.
        public var dropped: UInt64
        public var bytes: [UInt8]
        /// The stream's end now (`offset + bytes.count` when the reader has caught up).
        public var end: UInt64
    }

    public let bounds: Bounds
    private var logs: [UInt64: Log] = [:]
    /// Task ids in the order their logs began (oldest first, from `head`).
    private var order: [UInt64] = []
    private var head = 0
    /// The next of `order` to empty when the total is over its bound.
    private var emptiedUpTo = 0
    /// Bytes kept in all logs.
    public private(set) var totalBytes = 0

    public init(bounds: Bounds = Bounds()) {
        self.bounds = bounds
    }

    public var taskCount: Int { logs.count }

    public func knows(_ taskID: UInt64) -> Bool { logs[taskID] != nil }

    /// Appends what attempt `attempt` of a task wrote at `offset` of its stream. A later
    /// attempt starts its own part of the log after a marker line; an older attempt's bytes
    /// are dropped. Bytes the node dropped (a gap in its offsets) leave a marker line.
    public mutating func append(taskID: UInt64, attempt: UInt32, stream: LogStream, offset: UInt64, bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        var log = logs[taskID] ?? {
            order.append(taskID)
            return Log()
        }()
        if attempt < log.attempt { return }
        var ring = log[stream]
        let sentEnd = offset + UInt64(bytes.count)
        var bytes = bytes[...]
        if attempt > ring.attempt {
            if ring.attempt > 0 || attempt > 1 { add(Array("[colony: attempt \(attempt)]\n".utf8), to: &ring) }
            ring.attempt = attempt
            ring.attemptOffset = 0
        }
        log.attempt = attempt
        if offset > ring.attemptOffset {
            add(Array("[colony: \(offset - ring.attemptOffset) bytes dropped]\n".utf8), to: &ring)
        } else if offset < ring.attemptOffset {
            // Sent again (or overlapping): only what is new.
            let seen = Int(min(UInt64(bytes.count), ring.attemptOffset - offset))
            bytes = bytes.dropFirst(seen)
        }
        ring.attemptOffset = max(ring.attemptOffset, sentEnd)
        add(bytes, to: &ring)
        log[stream] = ring
        logs[taskID] = log
        enforceBounds()
    }

    private mutating func add(_ bytes: some Collection<UInt8>, to ring: inout Ring) {
        let before = ring.kept.count
        ring.kept.append(contentsOf: bytes)
        ring.end += UInt64(bytes.count)
        if ring.kept.count > bounds.streamBytesMax {
            ring.kept.removeFirst(ring.kept.count - bounds.streamBytesMax)
        }
        totalBytes += ring.kept.count - before
    }

    /// Empties the oldest logs past `totalBytesMax`, forgets the oldest past `tasksMax`.
    private mutating func enforceBounds() {
        // Oldest first; a log emptied before that has filled again is emptied on the next round.
        var scanned = 0
        while totalBytes > bounds.totalBytesMax && scanned < order.count - head {
            if emptiedUpTo < head || emptiedUpTo >= order.count { emptiedUpTo = head }
            let id = order[emptiedUpTo]
            emptiedUpTo += 1
            scanned += 1
            guard var log = logs[id] else { continue }
            totalBytes -= log.stdout.kept.count + log.stderr.kept.count
            log.stdout.kept = []
            log.stderr.kept = []
            logs[id] = log
        }
        while logs.count > bounds.tasksMax && head < order.count {
            let id = order[head]
            head += 1
            if let log = logs.removeValue(forKey: id) { totalBytes -= log.stdout.kept.count + log.stderr.kept.count }
        }
        if head > 1024 && head * 2 > order.count {
            order.removeFirst(head)
            emptiedUpTo = max(0, emptiedUpTo - head)
            head = 0
        }
    }

    /// Up to `bytesMax` of a stream from `offset`; nil for a task without a log. An offset
    /// past the end reads from the end.
    public func read(taskID: UInt64, stream: LogStream, from offset: UInt64, bytesMax: Int) -> Slice? {
        guard let ring = logs[taskID]?[stream] else { return nil }
        let from = min(max(offset, ring.start), ring.end)
        let dropped = from > offset ? from - offset : 0
        let skip = Int(from - ring.start)
        let count = min(bytesMax, ring.kept.count - skip)
        return Slice(offset: from, dropped: dropped, bytes: Array(ring.kept[skip..<(skip + count)]), end: ring.end)
    }
}
