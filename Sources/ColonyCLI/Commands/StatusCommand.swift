import ArgumentParser
import Colony
import Foundation

/// `colony status`: nodes, queue depth and counts.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the cluster: nodes with their slots and load, queue depth, task counts."
    )

    @OptionGroup var client: ClientOptions

    @Flag(name: .long, help: "Print one JSON object instead of a table.")
    var json = false

    func run() async throws {
        let status = try await withClient(client) { try await $0.status() }
        if json {
            print(Self.json(status))
            return
        }
        print("coordinator \(client.coordinatorURL): \(status.nodes.count) node(s), \(status.waiting) waiting, \(status.queued) queued, \(status.running) running, \(status.succeeded) succeeded, \(status.failed) failed, \(status.cancelled) cancelled, \(status.resultsWaiting) results waiting")
        if status.unplaceable > 0 {
            print("warning: \(status.unplaceable) queued task(s) need labels or a pool that no live node has")
        }
        for limit in status.limits {
            print("limit \(limit.name): \(limit.inUse)/\(limit.size) in use, at most \(limit.highWater) at once so far")
        }
        if status.nodes.isEmpty { return }
        let header = ["NODE", "HOST", "THREADS", "PROCESSES", "RUNNING", "DONE", "FAILED", "LAST SEEN"]
        let rows = status.nodes.map { node in
            [node.announcement.name + (node.announcement.draining ? " (draining)" : ""), node.announcement.host, "\(node.announcement.threadSlots)", "\(node.announcement.processSlots)", "\(node.running)",
             "\(node.completed)", "\(node.failed)", String(format: "%.1fs ago", node.lastSeenSecondsAgo)]
        }
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        for row in [header] + rows {
            print(row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
    }

    static func json(_ status: ClusterStatus) -> String {
        let object: [String: Any] = [
            "queued": status.queued, "running": status.running, "succeeded": status.succeeded, "failed": status.failed,
            "results_waiting": status.resultsWaiting, "stale_results_dropped": status.staleResultsDropped,
            "cancelled": status.cancelled, "retried": status.retried, "waiting": status.waiting, "unplaceable": status.unplaceable,
            "limits": status.limits.map { ["name": $0.name, "size": $0.size, "in_use": $0.inUse, "high_water": $0.highWater] as [String: Any] },
            "nodes": status.nodes.map { node -> [String: Any] in
                ["name": node.announcement.name, "host": node.announcement.host, "threads": node.announcement.threadSlots,
                 "processes": node.announcement.processSlots, "draining": node.announcement.draining,
                 "running": node.running, "completed": node.completed, "failed": node.failed,
                 "last_seen_s": node.lastSeenSecondsAgo, "handlers": node.announcement.handlers]
            },
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
