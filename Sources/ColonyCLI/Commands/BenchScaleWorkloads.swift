import Colony
import ColonyModel
import ColonySimulation
import Foundation

/// The scale figures of `colony bench`: many real node processes on one coordinator (W7), and
/// the core's dispatch cost on simulated clusters of 10 to 1,000 nodes.
extension BenchCommand {
    /// W7: `w7Nodes` node processes of 1 thread slot and 100 clients long-polling for results
    /// that never come (each holds a request at the coordinator), then 20,000 echo tasks.
    func manyNodesFigures(_ executable: URL) async throws -> [(String, Double)] {
        guard w7Nodes > 0 else { return [] }
        let url = "tcp://127.0.0.1:\(try freeTCPPort())"
        let log = NSTemporaryDirectory() + "colony-bench-w7-\(ProcessInfo.processInfo.processIdentifier).log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        var keepLog = false
        defer {
            if keepLog {
                FileHandle.standardError.write(Data("W7: nodes were declared lost; the coordinator's log is kept at \(log)\n".utf8))
            } else {
                try? FileManager.default.removeItem(atPath: log)
            }
        }
        let coordinator = Process()
        coordinator.executableURL = executable
        coordinator.arguments = ["coordinator", "--listen", url, "--state", ":memory:"]
        coordinator.standardOutput = FileHandle.nullDevice
        coordinator.standardError = FileHandle(forWritingAtPath: log)
        try coordinator.run()
        defer { stop(coordinator) }
        var nodes: [Process] = []
        defer {
            for node in nodes where node.isRunning { node.terminate() }
            for node in nodes { node.waitUntilExit() }
        }
        for index in 0..<w7Nodes {
            nodes.append(try spawn(executable, ["node", "--coordinator", url, "--threads", "1", "--processes", "0", "--name", "w7-\(index)"]))
        }
        let colony = try await connectWithRetry(url)
        let joinDeadline = ContinuousClock.now + .seconds(180)
        while try await colony.status().nodes.count < w7Nodes {
            guard ContinuousClock.now < joinDeadline else { throw CLIError("W7: not all \(w7Nodes) nodes joined within 180 s") }
            try await Task.sleep(for: .milliseconds(200))
        }
        let never = try await colony.submit((0..<100).map { _ in TaskSubmission(handler: "w7-nobody-has-this", input: Array("0".utf8)) })
        let waiters = Task {
            await withTaskGroup(of: Void.self) { group in
                for id in never {
                    group.addTask {
                        guard let client = try? ColonyClient(connect: url) else { return }
                        while !Task.isCancelled { _ = try? await client.fetchResult(of: id, wait: .seconds(5)) }
                        await client.close()
                    }
                }
            }
        }
        defer { waiters.cancel() }
        let inputs = Array(0..<20_000)
        let clock = ContinuousClock()
        let start = clock.now
        let outputs = try await colony.map("echo", inputs, as: Int.self)
        let elapsed = (clock.now - start).inSeconds
        guard outputs == inputs else { throw CLIError("W7: outputs differ from inputs") }
        let failed = try await colony.status().failed
        waiters.cancel()
        _ = try await colony.cancel(never)
        await colony.close()
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let lost = text.split(separator: "\n").filter { $0.contains("node lost") }.count
        keepLog = lost > 0
        return [("w7_tasks_per_s", Double(inputs.count) / elapsed), ("w7_nodes_lost", Double(lost)), ("w7_failed", Double(failed)),
                ("w7_coordinator_peak_rss_mib", peakRSSMiB(coordinator.processIdentifier))]
    }

    /// The core's CPU time per dispatched task at 10, 100 and 1,000 simulated nodes.
    func dispatchCostFigures() -> [(String, Double)] {
        var figures: [(String, Double)] = []
        var costs: [Int: Double] = [:]
        for nodes in [10, 100, 1000] {
            let report = ScaleSimulation(nodes: nodes, slotsPerNode: 64, tasksPerSlot: 4, seed: 7, churnEverySeconds: 0.05,
                                         checkEverySteps: 0).run()
            costs[nodes] = report.dispatchMicrosPerTask
            figures.append(("scale_dispatch_us_\(nodes)", report.dispatchMicrosPerTask))
            if let violation = report.violation { FileHandle.standardError.write(Data("scale simulation, \(nodes) nodes: \(violation)\n".utf8)) }
        }
        figures.append(("scale_dispatch_ratio", (costs[1000] ?? 0) / max(costs[10] ?? 1, 1e-9)))
        return figures
    }
}
