import ColonyModel

/// Giving memory back after a large drain. Swift's dictionaries and sets keep their capacity
/// when entries are removed, so a core that held a million tasks keeps tables sized for a
/// million until they are rebuilt.
extension CoordinatorCore {
    /// Tables at least this large are rebuilt once they are this sparse.
    static let compactionCapacityMin = 1 << 14
    static let compactionSparseness = 8

    /// Rebuilds the tables that are mostly empty (fewer than an eighth of their capacity in
    /// use). Returns whether any was rebuilt: the caller may then hand freed memory back to the
    /// system. O(live entries) when it rebuilds; O(1) otherwise.
    public mutating func compactIfSparse() -> Bool {
        var compacted = false
        func sparse(count: Int, capacity: Int) -> Bool {
            capacity >= Self.compactionCapacityMin && count * Self.compactionSparseness < capacity
        }
        if sparse(count: tasks.count, capacity: tasks.capacity) {
            tasks = Dictionary(uniqueKeysWithValues: tasks.lazy.map { ($0.key, $0.value) })
            compacted = true
        }
        if sparse(count: keys.count, capacity: keys.capacity) {
            keys = Dictionary(uniqueKeysWithValues: keys.lazy.map { ($0.key, $0.value) })
            compacted = true
        }
        if sparse(count: remembered.count, capacity: remembered.capacity) {
            remembered = Dictionary(uniqueKeysWithValues: remembered.lazy.map { ($0.key, $0.value) })
            compacted = true
        }
        if sparse(count: timedTasks.count, capacity: timedTasks.capacity) {
            var fresh = Set<TaskID>(minimumCapacity: timedTasks.count)
            for id in timedTasks { fresh.insert(id) }
            timedTasks = fresh
            compacted = true
        }
        let liveOrder = rememberedOrder.count - rememberedHead
        if sparse(count: liveOrder, capacity: rememberedOrder.capacity) {
            // A fresh buffer: an Array made from a slice of the whole array would share it.
            var fresh: [TaskID] = []
            fresh.reserveCapacity(liveOrder)
            fresh.append(contentsOf: rememberedOrder[rememberedHead...])
            rememberedOrder = fresh
            rememberedHead = 0
            compacted = true
        }
        return compacted
    }

    /// Tasks the core holds: unfinished, finished with results waiting, and remembered.
    public var knownTaskCount: Int { tasks.count + remembered.count }

    /// The capacity of the task table (for tests of compaction).
    public var taskTableCapacity: Int { tasks.capacity }

    /// Entries and capacity of each table compaction looks at (for tests).
    public var tableSizes: [String: (count: Int, capacity: Int)] {
        ["tasks": (tasks.count, tasks.capacity), "keys": (keys.count, keys.capacity),
         "remembered": (remembered.count, remembered.capacity), "timed": (timedTasks.count, timedTasks.capacity),
         "rememberedOrder": (rememberedOrder.count - rememberedHead, rememberedOrder.capacity)]
    }
}
