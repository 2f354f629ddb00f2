import ColonyModel

/// The tasks ready to run: by priority (higher first), then by scheduling class (the limits a
/// task uses and the labels it needs), FIFO within each class.
///
/// Dispatch asks for the oldest task of the highest priority that is *eligible* for a node
/// (its limits have room, the node has its labels). Classes keep that cheap: a blocked class
/// is skipped as a whole, so a lower priority that is eligible is never starved by a higher
/// one that is blocked.
struct ReadyQueue: Sendable {
    /// What decides whether a task may go to a node, apart from its priority.
    struct ClassKey: Hashable, Sendable {
        var uses: [String]
        var labels: [String: String]
        var pool: TaskPool = .automatic
        /// The handler that runs the work (for a `batch` task, the one it runs): a node must
        /// have it, and an `automatic` task takes its default pool.
        var handler: String = ""
        /// What its tasks ask for beyond one slot (empty: nothing).
        var resources: [ResourceVariant] = []
    }

    private struct Entry: Sendable {
        var sequence: UInt64
        var id: TaskID
    }

    private struct Lane: Sendable {
        var entries: [Entry] = []
        var head = 0
        var isEmpty: Bool { head == entries.count }
        var first: Entry? { head < entries.count ? entries[head] : nil }
        mutating func push(_ entry: Entry) { entries.append(entry) }
        mutating func push(contentsOf more: [Entry]) { entries.append(contentsOf: more) }
        mutating func pop() {
            head += 1
            if head == entries.count {
                entries.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 1024 && head * 2 >= entries.count {
                entries.removeFirst(head)
                head = 0
            }
        }
    }

    private var lanes: [Int32: [ClassKey: Lane]] = [:]
    private var prioritiesDescending: [Int32] = []
    private var sequence: UInt64 = 0
    private(set) var count = 0
    /// Classes with queued tasks that ask for resources: while there are none, dispatch
    /// takes its fast path (no fit check, no reservation).
    private(set) var resourceClasses = 0

    mutating func push(_ id: TaskID, priority: Int32, key: ClassKey) {
        sequence += 1
        if lanes[priority] == nil {
            lanes[priority] = [:]
            prioritiesDescending.append(priority)
            prioritiesDescending.sort(by: >)
        }
        if !key.resources.isEmpty && lanes[priority]![key] == nil { resourceClasses += 1 }
        lanes[priority]![key, default: Lane()].push(Entry(sequence: sequence, id: id))
        count += 1
    }

    /// Queues `ids` (oldest first) of one priority and class at once (a restart's recovery).
    mutating func push(_ ids: [TaskID], priority: Int32, key: ClassKey) {
        guard !ids.isEmpty else { return }
        if lanes[priority] == nil {
            lanes[priority] = [:]
            prioritiesDescending.append(priority)
            prioritiesDescending.sort(by: >)
        }
        let first = sequence + 1
        sequence += UInt64(ids.count)
        if !key.resources.isEmpty && lanes[priority]![key] == nil { resourceClasses += 1 }
        lanes[priority]![key, default: Lane()].push(contentsOf: ids.enumerated().map { Entry(sequence: first + UInt64($0.offset), id: $0.element) })
        count += ids.count
    }

    /// Removes and returns the oldest task of the highest priority whose class `eligible`
    /// accepts, with its class, or nil. `isLive` filters out entries whose task is no longer
    /// queued (they are dropped lazily, e.g. after a cancellation).
    mutating func pop(eligible: (ClassKey) -> Bool, isLive: (TaskID) -> Bool) -> (id: TaskID, key: ClassKey)? {
        for priority in prioritiesDescending {
            while true {
                var best: (key: ClassKey, entry: Entry)?
                for (key, lane) in lanes[priority]! {
                    guard let first = lane.first, eligible(key) else { continue }
                    if best == nil || first.sequence < best!.entry.sequence { best = (key, first) }
                }
                guard let chosen = best else { break }
                lanes[priority]![chosen.key]!.pop()
                if lanes[priority]![chosen.key]!.isEmpty {
                    lanes[priority]![chosen.key] = nil
                    if !chosen.key.resources.isEmpty { resourceClasses -= 1 }
                }
                // A stale entry was already subtracted from `count` by `forget`.
                if isLive(chosen.entry.id) {
                    count -= 1
                    return (chosen.entry.id, chosen.key)
                }
            }
            if lanes[priority]!.isEmpty {
                lanes[priority] = nil
                prioritiesDescending.removeAll { $0 == priority }
            }
        }
        return nil
    }

    /// The oldest live task of the highest priority whose class `eligible` accepts, left on
    /// the queue (entries of tasks no longer queued are dropped on the way).
    mutating func head(eligible: (ClassKey) -> Bool, isLive: (TaskID) -> Bool) -> (id: TaskID, key: ClassKey)? {
        for priority in prioritiesDescending {
            var best: (key: ClassKey, entry: Entry)?
            for key in Array(lanes[priority]!.keys) where eligible(key) {
                while let first = lanes[priority]![key]?.first, !isLive(first.id) {
                    lanes[priority]![key]!.pop()
                    if lanes[priority]![key]!.isEmpty {
                        lanes[priority]![key] = nil
                        if !key.resources.isEmpty { resourceClasses -= 1 }
                    }
                }
                guard let first = lanes[priority]![key]?.first else { continue }
                if best == nil || first.sequence < best!.entry.sequence { best = (key, first) }
            }
            if let best { return (best.entry.id, best.key) }
        }
        return nil
    }

    /// Called when a queued task left the queue by other means (cancelled), so that `count`
    /// stays exact; the entry itself is dropped when it reaches the head.
    mutating func forget() { count -= 1 }

    /// The classes that have queued tasks, for reporting tasks no node can take.
    var classes: [(key: ClassKey, count: Int)] {
        lanes.values.flatMap { $0.map { (key: $0.key, count: $0.value.entries.count - $0.value.head) } }
    }
}
