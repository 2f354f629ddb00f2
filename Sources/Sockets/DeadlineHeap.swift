/// A binary min-heap of waits by deadline (`SocketReactor`'s timer).
struct DeadlineHeap {
    struct Entry {
        var deadline: ContinuousClock.Instant
        var fd: Int32
        var token: UInt64
    }

    private var entries: [Entry] = []

    init() {}

    init(_ entries: [Entry]) {
        self.entries = entries.sorted { $0.deadline < $1.deadline }  // a sorted array is a heap
    }

    var count: Int { entries.count }
    var first: Entry? { entries.first }

    mutating func push(_ entry: Entry) {
        entries.append(entry)
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].deadline < entries[parent].deadline else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() {
        guard !entries.isEmpty else { return }
        entries.swapAt(0, entries.count - 1)
        entries.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < entries.count && entries[left].deadline < entries[smallest].deadline { smallest = left }
            if right < entries.count && entries[right].deadline < entries[smallest].deadline { smallest = right }
            if smallest == parent { return }
            entries.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
