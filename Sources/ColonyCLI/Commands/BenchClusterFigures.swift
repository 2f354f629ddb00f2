import ArgumentParser
import Colony
import ColonyCore
import ColonyModel
import ColonyNode
import Foundation
import NNG

// The figures `colony bench` measures on extra clusters: nng's floor, balancing, durability.
extension BenchCommand {
    /// p50/p99 of 2,000 sequential 64-byte request/reply round trips over tcp loopback, through
    /// Colony's NNG wrapper, with the replier in a child process (`colony bench-echo-server`
    /// would be one more command; the coordinator answers a malformed request with an error
    /// reply, which is exactly an echo of the cheapest kind).
    func roundTripFloor(_ transport: BenchTransport) async throws -> [(String, Double)] {
        let url = "\(transport.scheme)://127.0.0.1:\(try freeTCPPort())"
        let server = try spawn(try currentExecutable(), ["coordinator", "--listen", url, "--state", ":memory:"])
        defer { stop(server) }
        var link: CoordinatorLink?
        for _ in 0..<100 where link == nil {
            link = try? CoordinatorLink(url: url, tls: nil, waitForConnection: true, onLoss: .resend)
            if link == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        guard let link else { throw CLIError("W0: the echo peer did not start") }
        defer { link.close() }
        let requester = try link.openRequester()
        let payload = [UInt8](repeating: 0xAB, count: 64)
        let clock = ContinuousClock()
        var samples: [Double] = []
        for i in 0..<2200 {
            let t0 = clock.now
            _ = try await requester.request(payload, timeout: .seconds(5), url: url)
            if i >= 200 { samples.append((clock.now - t0).inSeconds * 1e6) }
        }
        samples.sort()
        return [("w0_\(transport.rawValue)_rtt_p50_us", percentile(samples, 0.5)), ("w0_\(transport.rawValue)_rtt_p99_us", percentile(samples, 0.99))]
    }

    /// W5b and W5c on 2 nodes x 2 thread slots. W5b: after a burst of 2,000 echo tasks (which
    /// teaches the nodes to prefetch), 8 x sleep 1: makespan (ideal 2.0 s). W5c: 400 sleeps,
    /// every tenth 50 ms and the rest 1 ms: makespan over the ideal (total / 4 slots).
    func balancingFigures(_ executable: URL) async throws -> [(String, Double)] {
        let url = "tcp://127.0.0.1:\(try freeTCPPort())"
        let coordinator = try spawn(executable, ["coordinator", "--listen", url, "--state", ":memory:"])
        defer { stop(coordinator) }
        let nodes = try ["a", "b"].map { try spawn(executable, ["node", "--coordinator", url, "--threads", "2", "--processes", "0", "--name", $0]) }
        defer { nodes.forEach(stop) }
        let colony = try await connectWithRetry(url)
        while try await colony.status().nodes.count < 2 { try await Task.sleep(for: .milliseconds(10)) }
        let clock = ContinuousClock()
        _ = try await colony.map("echo", Array(0..<2000), as: Int.self)
        var start = clock.now
        _ = try await colony.map("sleep", Array(repeating: 1.0, count: 8), as: Double.self, options: TaskOptions(pool: .thread))
        let w5b = (clock.now - start).inSeconds
        let sleeps = (1...400).map { $0 % 10 == 0 ? 0.05 : 0.001 }
        start = clock.now
        _ = try await colony.map("sleep", sleeps, as: Double.self, options: TaskOptions(pool: .thread))
        let w5c = (clock.now - start).inSeconds
        await colony.close()
        return [("w5b_makespan_s", w5b), ("w5c_makespan_s", w5c), ("w5c_ratio", w5c / (sleeps.reduce(0, +) / 4))]
    }

    /// W1 against a coordinator with a state folder; the time a coordinator killed with
    /// `--recovery-tasks` queued tasks takes to answer again; the time from a node's SIGKILL
    /// to its tasks running on another node.
    func durabilityFigures(_ executable: URL) async throws -> [(String, Double)] {
        var figures: [(String, Double)] = []
        let folder = NSTemporaryDirectory() + "colony-bench-state-\(ProcessInfo.processInfo.processIdentifier)"
        try? FileManager.default.removeItem(atPath: folder)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let clock = ContinuousClock()

        // W1 with every transition journaled.
        var url = "tcp://127.0.0.1:\(try freeTCPPort())"
        var coordinator = try spawn(executable, ["coordinator", "--listen", url, "--state", folder])
        var node = try spawn(executable, ["node", "--coordinator", url, "--threads", "\(threads)", "--processes", "0", "--name", "bench-node"])
        var colony = try await connectWithRetry(url)
        try await waitForNode(colony)
        _ = try await colony.map("echo", Array(0..<2000), as: Int.self)
        var start = clock.now
        let inputs = Array(0..<w1Tasks)
        let echoed = try await colony.map("echo", inputs, as: Int.self)
        guard echoed == inputs else { throw CLIError("W1 durable: outputs differ from inputs") }
        figures.append(("w1_durable_tasks_per_s", Double(w1Tasks) / (clock.now - start).inSeconds))
        await colony.close()
        stop(node)

        // Recovery: queue tasks with no node to run them, kill -9, restart, time to answer.
        colony = try await connectWithRetry(url)
        var queued = 0
        while queued < recoveryTasks {
            let batch = min(50_000, recoveryTasks - queued)
            _ = try await colony.submit(Array(repeating: TaskSubmission(handler: "echo", input: Array("1".utf8)), count: batch))
            queued += batch
        }
        await colony.close()
        kill(coordinator.processIdentifier, SIGKILL)
        coordinator.waitUntilExit()
        start = clock.now
        coordinator = try spawn(executable, ["coordinator", "--listen", url, "--state", folder])
        colony = try await connectWithRetry(url)
        let status = try await colony.statusWhenUp()
        figures.append(("recovery_s", (clock.now - start).inSeconds))
        figures.append(("recovery_tasks", Double(status.queued)))
        if let size = try? FileManager.default.attributesOfItem(atPath: folder + "/colony.db")[.size] as? Int {
            figures.append(("state_file_mib", Double(size) / 1_048_576))
        }
        await colony.close()
        stop(coordinator)

        // Node death: two 60 s tasks on node A; kill -9 A; time until both run on node B.
        url = "tcp://127.0.0.1:\(try freeTCPPort())"
        coordinator = try spawn(executable, ["coordinator", "--listen", url, "--state", ":memory:"])
        defer { stop(coordinator) }
        node = try spawn(executable, ["node", "--coordinator", url, "--threads", "2", "--processes", "0", "--name", "victim"])
        colony = try await connectWithRetry(url)
        try await waitForNode(colony)
        let ids = try await colony.submit(Array(repeating: TaskSubmission(handler: "sleep", input: Array("60".utf8)), count: 2))
        while try await colony.status().running < 2 { try await Task.sleep(for: .milliseconds(10)) }
        let survivor = try spawn(executable, ["node", "--coordinator", url, "--threads", "2", "--processes", "0", "--name", "survivor"])
        defer { stop(survivor) }
        while try await colony.status().nodes.count < 2 { try await Task.sleep(for: .milliseconds(10)) }
        kill(node.processIdentifier, SIGKILL)
        node.waitUntilExit()
        start = clock.now
        while true {
            let running = try await colony.tasks(in: .running)
            if ids.allSatisfy({ id in running.contains { $0.id == id && $0.node == "survivor" } }) { break }
            guard (clock.now - start).inSeconds < 60 else { throw CLIError("node death: tasks did not move within 60 s") }
            try await Task.sleep(for: .milliseconds(10))
        }
        figures.append(("node_death_requeue_s", (clock.now - start).inSeconds))
        _ = try await colony.cancel(ids)
        await colony.close()
        return figures
    }
}
