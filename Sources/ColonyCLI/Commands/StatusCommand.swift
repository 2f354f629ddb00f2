import ArgumentParser
import Colony
import ColonyModel
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
        if json {
            // The same JSON as the HTTP API's /api/v1/status (one model: ClusterReport).
            let report = try await withClient(client) { try await $0.report() }
            print(report.json())
            return
        }
        let status = try await withClient(client) { try await $0.status() }
        print("coordinator \(client.coordinatorURL): \(status.nodes.count) node(s), \(status.waiting) waiting, \(status.queued) queued, \(status.running) running, \(status.succeeded) succeeded, \(status.failed) failed, \(status.cancelled) cancelled, \(status.resultsWaiting) results waiting")
        if let allocation = status.allocation {
            print("allocations (\(allocation.system)): \(allocation.requested) requested, \(allocation.running) running, at most \(allocation.max); \(allocation.submitted) submitted so far")
        }
        for entry in status.unplaceableReasons {
            print("warning: \(entry.count) queued task(s) cannot run anywhere: \(entry.reason)")
        }
        if let failure = status.journalFailure {
            print("warning: the coordinator cannot write its journal and refuses changes until it can: \(failure)")
        }
        for limit in status.limits {
            print("limit \(limit.name): \(limit.inUse)/\(limit.size) in use, at most \(limit.highWater) at once so far")
        }
        if !status.sessions.isEmpty {
            printTable(["SESSION", "UNFINISHED", "RESULTS WAITING", "IDLE"], status.sessions.map { session in
                [session.session, "\(session.unfinished)", "\(session.resultsWaiting)",
                 String(format: "%.0fs", session.idleSeconds) + (session.detached ? " (detached)" : "")]
            })
        }
        if !status.jobs.isEmpty {
            // The ten newest; `colony job list` has them all.
            printTable(["JOB", "NAME", "STATE", "DONE", "FAILED", "AGE"], status.jobs.prefix(10).map { job in
                ["\(job.id)", job.name.map(NameCheck.escaped) ?? "-", job.state.rawValue, "\(job.counts.finished)/\(job.counts.total)",
                 "\(job.counts.failed)", JobText.formatAge(job.ageSeconds)]
            })
        }
        if status.nodes.isEmpty { return }
        let withResources = status.nodes.contains { !$0.announcement.resources.isEmpty }
        printTable(["NODE", "HOST", "THREADS", "PROCESSES", "IO", "RUNNING", "DONE", "FAILED", "LAST SEEN"] + (withResources ? ["RESOURCES"] : []),
                   status.nodes.map { node in
            [node.announcement.name + (node.announcement.draining ? " (draining)" : ""), node.announcement.host, "\(node.announcement.threadSlots)", "\(node.announcement.processSlots)",
             "\(node.announcement.ioSlots)", "\(node.running)",
             "\(node.completed)", "\(node.failed)", String(format: "%.1fs ago", node.lastSeenSecondsAgo)]
                + (withResources ? [node.resourceColumn] : [])
        })
    }

    private func printTable(_ header: [String], _ rows: [[String]]) {
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        for row in [header] + rows {
            print(row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
    }
}
