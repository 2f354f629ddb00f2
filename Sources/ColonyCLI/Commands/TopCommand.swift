import ArgumentParser
import Colony
import ColonyModel
import ColonyWire
import Foundation

/// `colony top`: the cluster at a glance, refreshed in place.
struct TopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "Watch the cluster live: nodes and their load, throughput, queue, latency, recent failures, counters and limits.",
        discussion: """
            On a terminal the view is redrawn in place every --interval seconds (Ctrl-C to quit).
            Otherwise (a pipe, a file) each refresh is printed as plain text, one after another.
            `colony top --once` prints one view and exits; `colony status --json` is the same
            figures for scripts.
            """
    )

    @OptionGroup var client: ClientOptions

    @Option(name: .long, parsing: .unconditional, help: "Seconds between refreshes.")
    var interval: Double = 1
    static let intervalRange = SecondsRange(0.1...3600)

    @Flag(name: .long, help: "Print one view and exit.")
    var once = false

    func validate() throws {
        _ = try Self.intervalRange.check(interval, "--interval")
    }

    func run() async throws {
        let interval = try Self.intervalRange.duration(self.interval, "--interval")
        let terminal = isatty(STDOUT_FILENO) == 1 && !once
        try await withClient(client) { colony in
            while true {
                let report = try await colony.report()
                let view = Self.render(report, coordinator: client.coordinatorURL, width: terminal ? Self.terminalWidth() : 120)
                // On a terminal: home, draw, clear what is left of the previous view. Written
                // straight to the descriptor, so a pipe sees each view as it comes.
                let text = terminal ? "\u{1B}[H" + view.replacingOccurrences(of: "\n", with: "\u{1B}[K\n") + "\u{1B}[J" : view + "\n"
                FileHandle.standardOutput.write(Data(text.utf8))
                if once { return }
                try await Task.sleep(for: interval)
            }
        }
    }

    static func terminalWidth() -> Int {
        var size = winsize()
        return ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 20 ? Int(size.ws_col) : 100
    }

    static func number(_ value: some BinaryInteger) -> String {
        let formatter = NumberFormatter()
        formatter.numberStyle = .decimal
        formatter.groupingSeparator = ","
        return formatter.string(from: NSNumber(value: Int64(value))) ?? "\(value)"
    }

    static func mebibytes(_ bytes: UInt64?) -> String {
        guard let bytes else { return "-" }
        return String(format: "%.0f MiB", Double(bytes) / 1_048_576)
    }

    static func milliseconds(_ value: Double?) -> String {
        guard let value else { return "-" }
        return value < 10 ? String(format: "%.2f ms", value) : String(format: "%.0f ms", value)
    }

    /// The view as text (also what tests read).
    static func render(_ report: ClusterReport, coordinator: String, width: Int) -> String {
        var lines: [String] = []
        let clock = DateFormatter()
        clock.dateFormat = "HH:mm:ss"
        lines.append("colony top - \(coordinator) - up \(Int(report.uptimeS)) s - \(report.nodes.count) node(s) - \(clock.string(from: Date()))")
        lines.append(String(format: "throughput: %.1f tasks/s now, %.1f tasks/s over the last minute", report.throughputNow, report.throughputMinute))
        lines.append("tasks: \(number(report.submitted)) submitted, \(number(report.succeeded)) succeeded, \(number(report.failed)) failed, "
            + "\(number(report.cancelled)) cancelled, \(number(report.retried)) retried | \(number(report.waiting)) waiting, "
            + "\(number(report.queued)) queued, \(number(report.running)) running, \(number(report.resultsWaiting)) results waiting")
        lines.append("latency (last minute): queue wait p50 \(milliseconds(report.queueWaitP50Ms)), p99 \(milliseconds(report.queueWaitP99Ms)); "
            + "run time p50 \(milliseconds(report.runTimeP50Ms)), p99 \(milliseconds(report.runTimeP99Ms))")
        if let allocation = report.allocation {
            lines.append("allocations (\(allocation.system)): \(allocation.requested) requested, \(allocation.running) running, at most \(allocation.max)")
        }
        for entry in report.unplaceableReasons {
            lines.append("warning: \(number(entry.count)) queued task(s) cannot run anywhere: \(entry.reason)")
        }
        lines.append("")
        if report.nodes.isEmpty {
            lines.append("no nodes (start one: colony node --coordinator \(coordinator))")
        } else {
            let withResources = report.nodes.contains { $0.resources != nil }
            let header = ["NODE", "HOST", "THREADS BUSY", "PROCESSES BUSY", "IO BUSY", "PREFETCHED", "DONE", "FAILED", "RSS", "CHILDREN RSS", "CHILD STARTS", "LAST SEEN"]
                + (withResources ? ["RESOURCES"] : [])
            let rows = report.nodes.map { node in
                [node.name + (node.draining ? " (draining)" : ""), node.host,
                 "\(node.busyThreads)/\(node.threads)", "\(node.busyProcesses)/\(node.processes)", "\(node.busyIO)/\(node.ioSlots)",
                 number(node.prefetched),
                 number(node.completed), number(node.failed), mebibytes(node.rssBytes), mebibytes(node.childrenRssBytes),
                 node.childrenStarted.map { number($0) } ?? "-", String(format: "%.1f s ago", node.lastSeenS)]
                    + (withResources ? [node.resources ?? "-"] : [])
            }
            let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
            for row in [header] + rows {
                lines.append(row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  "))
            }
        }
        if !report.recentFailures.isEmpty {
            lines.append("")
            let reasons = report.failedByReason.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
            lines.append("RECENT FAILURES (all failures by reason: \(reasons.joined(separator: ", ")))")
            for failure in report.recentFailures.prefix(8) {
                let line = "  task \(failure.id) \(failure.handler) on \(failure.node.isEmpty ? "-" : failure.node), \(Int(failure.secondsAgo)) s ago, \(failure.reason): \(failure.error)"
                lines.append(String(line.replacingOccurrences(of: "\n", with: " ").prefix(width)))
            }
        }
        if !report.counters.isEmpty {
            lines.append("")
            lines.append("COUNTERS  " + report.counters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "  "))
        }
        if let jobs = report.jobs, !jobs.isEmpty {
            lines.append("JOBS      " + jobs.prefix(5).map { job in
                "\(job.id)\(job.name.map { " " + NameCheck.escaped($0) } ?? "") \(job.state) \(job.finished)/\(job.total)"
                    + (job.failed > 0 ? " (\(job.failed) failed)" : "") + " \(JobText.formatAge(job.ageS))"
            }.joined(separator: "  "))
        }
        if !report.limits.isEmpty {
            lines.append("LIMITS    " + report.limits.map { "\($0.name) \($0.inUse)/\($0.size) (at most \($0.highWater) at once)" }.joined(separator: "  "))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
