import ColonyModel
import ColonyWire

extension ClusterFigures {
    /// The status with figures, as `colony top`, `colony status --json` and the HTTP API get it.
    func wire(status: ClusterStatus) -> Colony_V1_StatusReply {
        var reply = status.wire
        reply.uptimeSeconds = now
        let slots = Dictionary(nodeSlots.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for index in reply.nodes.indices {
            let node = slots[reply.nodes[index].info.name]
            reply.nodes[index].runningProcess = UInt32(clamping: node?.processBusy ?? 0)
            reply.nodes[index].runningIo = UInt32(clamping: node?.ioBusy ?? 0)
            reply.nodes[index].waitingThread = UInt32(clamping: node?.threadWaiting ?? 0)
            reply.nodes[index].waitingProcess = UInt32(clamping: node?.processWaiting ?? 0)
            reply.nodes[index].waitingIo = UInt32(clamping: node?.ioWaiting ?? 0)
        }
        var figures = Colony_V1_Figures()
        figures.submitted = counts.submitted
        figures.waiting = UInt64(counts.waiting)
        figures.queued = UInt64(counts.queued)
        figures.running = UInt64(counts.running)
        figures.finishedPerSecondNow = finishedPerSecondNow
        figures.finishedPerSecondMinute = finishedPerSecondMinute
        if let queueWait {
            figures.queueWaitP50Ms = queueWait.p50 * 1000
            figures.queueWaitP99Ms = queueWait.p99 * 1000
        }
        if let runTime {
            figures.runTimeP50Ms = runTime.p50 * 1000
            figures.runTimeP99Ms = runTime.p99 * 1000
        }
        figures.recentFailures = recentFailures.reversed().map { note in
            var wire = Colony_V1_FailureNote()
            wire.id = note.id
            wire.handler = note.handler
            wire.error = note.error
            wire.node = note.node
            wire.secondsAgo = max(0, now - note.at)
            wire.reason = note.reason.rawValue
            return wire
        }
        figures.counters = counters.map { counter in
            var value = Colony_V1_CounterValue()
            value.name = counter.name
            value.value = counter.value
            return value
        }
        figures.failedByReason = Dictionary(uniqueKeysWithValues: counts.failedByReason.map { ($0.key.rawValue, $0.value) })
        figures.refusedRequests = refusedRequests
        figures.throughput = throughput.map { point in
            var wire = Colony_V1_ThroughputPoint()
            wire.secondsAgo = point.secondsAgo
            wire.finishedPerSecond = point.perSecond
            return wire
        }
        reply.figures = figures
        return reply
    }
}
