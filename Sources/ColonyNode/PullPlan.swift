/// The pull loop's decisions as pure values, tested like the core (`PullPlanTests`): whether
/// the node sends a pull now, whether it is its goodbye, and which results ride on it.
/// `NodeAgent.nextPull` gathers the situation and builds the message.
struct PullPlan {
    /// What the node knows when it may pull.
    struct Situation: Equatable {
        /// A failed pull's back-off is running, or the node has left.
        var backingOff = false
        var drained = false
        var draining = false
        /// Contexts free to carry a request, and pulls out now.
        var freeContexts = 1
        var inFlight = 0
        /// No task runs in any pool and none waits on the node for a slot.
        var idle = true
        /// Tasks wait on the node for a slot (so more results come soon).
        var queuedLocally = false
        var pendingResults = 0
        var handBacks = 0
        /// Live output is due to the coordinator.
        var outputDue = false
        /// Tasks started or stopped waiting for their subtasks since the last pull.
        var waitingChanged = false
        /// How long the oldest pending result has waited, if any does.
        var oldestResultAge: Duration?
        var resultLinger: Duration = .milliseconds(2)
        var resultsPerPullMax = 4096
    }

    enum Decision: Equatable {
        /// No pull now (one is out and nothing new to say, or the batch is still filling).
        case wait
        /// A pull now; `mayLeave`: the node is drained, so this pull says goodbye if it carries
        /// every pending result.
        case send(mayLeave: Bool)
    }

    static func decide(_ s: Situation) -> Decision {
        if s.backingOff || s.freeContexts == 0 || s.drained { return .wait }
        // Drained: nothing runs, nothing waits to be delivered, no other pull out. Leave.
        let mayLeave = s.draining && s.inFlight == 0 && s.idle && s.pendingResults <= s.resultsPerPullMax
        if s.inFlight >= 1 && s.pendingResults == 0 && s.handBacks == 0 && !s.outputDue && !s.waitingChanged { return .wait }
        // Busy: let a few more results join this batch (the linger timer sends it).
        if s.inFlight >= 1 && s.queuedLocally, let age = s.oldestResultAge, age < s.resultLinger { return .wait }
        return .send(mayLeave: mayLeave)
    }

    /// How many of the pending results (in order: their sizes, and whether their task's output
    /// has not gone out yet) ride on the next pull: at most `countMax`, at most `bytesMax`
    /// unless it is the first, and none from the first whose output is still held (a task's
    /// result never reaches the coordinator before its output).
    static func batch(_ pending: some Sequence<(bytes: Int, outputHeld: Bool)>, countMax: Int, bytesMax: Int) -> Int {
        var taken = 0
        var bytes = 0
        for result in pending {
            if result.outputHeld || taken == countMax || (taken > 0 && bytes + result.bytes > bytesMax) { break }
            bytes += result.bytes
            taken += 1
        }
        return taken
    }
}
