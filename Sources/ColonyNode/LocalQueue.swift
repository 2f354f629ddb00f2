import ColonyWire
import Foundation

/// Tasks waiting on the node for a free slot of one pool, oldest first.
struct LocalQueue {
    private var items: [Colony_V1_Task] = []
    private var queuedAt: [ContinuousClock.Instant] = []
    private var head = 0

    var isEmpty: Bool { head == items.count }
    /// The oldest task waiting.
    var first: Colony_V1_Task? { head < items.count ? items[head] : nil }

    /// When the oldest task still waiting was queued.
    var oldestQueuedAt: ContinuousClock.Instant? { head < queuedAt.count ? queuedAt[head] : nil }

    /// Queues `task`, which arrived at `time` (one clock read per dispatched batch, not per task).
    mutating func push(_ task: Colony_V1_Task, at time: ContinuousClock.Instant) {
        items.append(task)
        queuedAt.append(time)
    }

    mutating func pop() -> Colony_V1_Task? {
        guard head < items.count else { return nil }
        let task = items[head]
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            queuedAt.removeAll(keepingCapacity: true)
            head = 0
        }
        return task
    }

    /// Empties the queue; returns what was waiting, oldest first.
    mutating func takeAll() -> [Colony_V1_Task] {
        defer {
            items = []
            queuedAt = []
            head = 0
        }
        return Array(items[head...])
    }

    /// Takes the tasks whose ids are in `ids` out of the queue and returns them.
    mutating func remove(_ ids: Set<UInt64>) -> [Colony_V1_Task] {
        let waiting = items[head...]
        let removed = waiting.filter { ids.contains($0.id) }
        if !removed.isEmpty {
            let kept = waiting.indices.filter { !ids.contains(items[$0].id) }
            queuedAt = kept.map { queuedAt[$0] }
            items = kept.map { items[$0] }
            head = 0
        }
        return removed
    }
}
