import ColonyModel

extension ClusterStatus {
    public init(wire: Colony_V1_StatusReply) {
        self.init(
            nodes: wire.nodes.map { node in
                ClusterStatus.Node(
                    announcement: NodeAnnouncement(name: node.info.name, host: node.info.host, threadSlots: Int(node.info.threadSlots),
                                                   handlers: node.info.handlers, pid: Int(node.info.pid), labels: node.info.labels,
                                                   processSlots: Int(node.info.processSlots),
                                                   processHandlers: Set(node.info.processHandlers), ioSlots: Int(node.info.ioSlots),
                                                   ioHandlers: Set(node.info.ioHandlers), draining: node.info.draining)
                        .offering(NodeAnnouncement.resources(wire: node.info.resources)),
                    running: Int(node.running), completed: node.completed, failed: node.failed,
                    lastSeenSecondsAgo: Double(node.lastSeenMsAgo) / 1000)
                    .holding(node.resourcesHeld)
            },
            queued: Int(wire.queued), running: Int(wire.running), succeeded: wire.succeeded, failed: wire.failed,
            resultsWaiting: Int(wire.resultsWaiting), staleResultsDropped: wire.staleResultsDropped)
        cancelled = wire.cancelled
        retried = wire.retried
        waiting = Int(wire.waiting)
        unplaceable = Int(wire.unplaceable)
        unplaceableReasons = wire.unplaceableReasons.map { Unplaceable(reason: $0.reason, count: Int($0.count)) }
        limits = wire.limits.map(LimitStatus.init(wire:))
        sessions = wire.sessions.map {
            SessionStatus(session: $0.session, unfinished: Int($0.unfinished), resultsWaiting: Int($0.resultsWaiting),
                          idleSeconds: $0.idleSeconds, detached: $0.detached)
        }
        journalFailure = wire.journalFailure.isEmpty ? nil : wire.journalFailure
        if wire.hasAllocation {
            allocation = AllocationStatus(system: wire.allocation.system, requested: Int(wire.allocation.requested),
                                          running: Int(wire.allocation.running), max: Int(wire.allocation.max),
                                          submitted: wire.allocation.submitted)
        }
        jobs = wire.jobs.map(JobInfo.init(wire:))
    }
}

extension LimitStatus {
    public init(wire: Colony_V1_LimitInfo) {
        self.init(name: wire.name, size: Int(wire.size), inUse: Int(wire.inUse), highWater: Int(wire.highWater))
    }
}
