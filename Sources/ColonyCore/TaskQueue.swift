/// A FIFO of task ids with O(1) push and pop (a growable ring buffer).
struct TaskQueue: Sendable {
    private var storage: [TaskID] = []
    private var head = 0

    var count: Int { storage.count - head }
    var isEmpty: Bool { head == storage.count }

    mutating func push(_ id: TaskID) { storage.append(id) }

    mutating func pop() -> TaskID? {
        guard head < storage.count else { return nil }
        let id = storage[head]
        head += 1
        // Reclaim the consumed prefix once it dominates, so memory follows the live count.
        if head >= 1024 && head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return id
    }
}
