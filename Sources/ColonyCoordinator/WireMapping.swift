import ColonyCore
import ColonyWire

// Conversions between wire messages and core values. Kept apart so that the core knows
// nothing of protobuf and the wire knows nothing of dispatch rules.

extension TaskOutcome {
    init(wire: Colony_V1_TaskResult) {
        self.init(id: wire.id, attempt: wire.attempt, succeeded: wire.ok, output: Array(wire.output),
                  error: wire.error, node: wire.node, runMicros: wire.runMicros)
    }

    var wire: Colony_V1_TaskResult {
        var result = Colony_V1_TaskResult()
        result.id = id
        result.attempt = attempt
        result.ok = succeeded
        result.output = .init(output)
        result.error = error
        result.node = node
        result.runMicros = runMicros
        return result
    }
}

extension DispatchedTask {
    var wire: Colony_V1_Task {
        var task = Colony_V1_Task()
        task.id = id
        task.handler = handler
        task.input = .init(input)
        task.attempt = attempt
        return task
    }
}

extension NodeAnnouncement {
    init(wire: Colony_V1_NodeInfo, prefetch: UInt32 = 0) {
        self.init(name: wire.name, host: wire.host, threadSlots: Int(wire.threadSlots), handlers: wire.handlers,
                  pid: Int(wire.pid), prefetch: Int(prefetch))
    }

    var wire: Colony_V1_NodeInfo {
        var info = Colony_V1_NodeInfo()
        info.name = name
        info.host = host
        info.threadSlots = UInt32(clamping: threadSlots)
        info.handlers = handlers
        info.pid = UInt32(clamping: pid)
        return info
    }
}

extension ClusterStatus {
    var wire: Colony_V1_StatusReply {
        var reply = Colony_V1_StatusReply()
        reply.nodes = nodes.map { node in
            var status = Colony_V1_NodeStatus()
            status.info = node.announcement.wire
            status.running = UInt32(clamping: node.running)
            status.completed = node.completed
            status.failed = node.failed
            status.lastSeenMsAgo = UInt64(node.lastSeenSecondsAgo * 1000)
            return status
        }
        reply.queued = UInt64(queued)
        reply.running = UInt64(running)
        reply.succeeded = succeeded
        reply.failed = failed
        reply.resultsWaiting = UInt64(resultsWaiting)
        reply.staleResultsDropped = staleResultsDropped
        return reply
    }
}
