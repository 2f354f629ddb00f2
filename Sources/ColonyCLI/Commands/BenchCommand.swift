import ArgumentParser
import Colony
import ColonyCore
import ColonyModel
import ColonyNode
import Foundation
import NNG

/// `colony bench`: the workloads of BENCHMARKS.md over tcp on 127.0.0.1, with the coordinator
/// and the node as separate processes and this process as the client.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure throughput and latency (W1-W9) with a coordinator and a node as separate processes.",
        discussion: """
            Build with `swift build -c release` first: debug builds are many times slower.
            W1: no-op (echo) tasks submitted as one map, tasks/s.
            W2: sequential submit-then-wait no-op tasks, p50/p99 latency in microseconds.
            W3: primes below 2,000,000 by trial division in 64 tasks on a node with 2 thread slots,
                wall time and speedup over the same loop run serially in this process; then the
                same in the node's process pool (2 children): w3_process_wall_s, w3_process_speedup.
            W4: 200 tasks x 100 increments of one cluster counter: increments/s, final value (20000).
            W5: 200 sleeps (90% 1 ms, 10% 50 ms, fixed seed) on 2 slots: makespan over sum/slots.
            W7: 300 node processes (1 thread slot each) and 100 clients long-polling for results,
                20,000 echo tasks: tasks/s, nodes declared lost (goal 0), coordinator peak RSS.
                scale_dispatch_us_N: the coordinator core's CPU time per dispatched task with N
                simulated nodes of 64 slots (mixed task lengths, node churn); the goal is at most
                2x from 10 to 1,000 nodes (scale_dispatch_ratio).
            W6: 2,000 commands `echo` through `colony map` (process pool), tasks/s, beside
                `xargs -P2 -n1` and GNU `parallel -j2` on the same inputs. A peer's figure counts
                only when it is the program named and printed every input once; otherwise
                peers_not_counted says why (in --json, an object of figure key to reason).
            W8: 400 fetches from a local server answering after 50 ms on the node (in its 256 io slots),
                wall time, beside Python ThreadPoolExecutor(32) + urllib and asyncio (bench/io_peers.py).
            W9: the mean of 10,000,000 numbers in 10 chunks through `colony map --pipe` (awk),
                wall time, beside Python ProcessPoolExecutor(2) over the same chunks.
            """
    )

    @Flag(name: .long, help: "Print one JSON object (keys w1_tasks_per_s, w2_p50_us, ...).")
    var json = false

    @Option(name: .long, help: "W1: number of no-op tasks.")
    var w1Tasks = 20_000

    @Option(name: .long, help: "W2: number of sequential tasks.")
    var w2Tasks = 2_000

    @Option(name: .long, help: "W3: count primes below this number.")
    var w3Limit = 2_000_000

    @Option(name: .long, help: "W6: number of commands (for Colony and each peer).")
    var w6Tasks = 2_000

    @Option(name: .long, help: "Thread slots of the benchmark node.")
    var threads = 2

    @Option(name: .long, help: "Process slots of the benchmark node (W3 in the process pool, W6).")
    var processes = 2

    @Option(name: .long, help: "Durability: tasks queued before the coordinator is killed and restarted (recovery time).")
    var recoveryTasks = 100_000

    @Flag(name: .long, help: "Skip the durability figures (W1 with a state folder, recovery, node death).")
    var skipDurability = false

    @Flag(name: .long, help: "Skip the scale figures (W7: 300 node processes and 100 waiting clients; the core's dispatch cost at 10, 100 and 1,000 simulated nodes).")
    var skipScale = false

    @Flag(name: .long, help: "Also run Python's thread and process pools on W1-W5 (bench/peers.py) in this run and print Colony's ratio to each (KEY_over_py_POOL).")
    var peers = false

    @Flag(name: .long, help: "Only the scale figures (W7 and the dispatch cost), with --cluster-binary if given.")
    var onlyScale = false

    @Option(name: .long, help: "W7: node processes (1 thread slot each; 0: skip W7).")
    var w7Nodes = 300

    @Option(name: .long, help: "Run the coordinator and nodes of W5b, W5c and W7 from this colony binary (another build, for a before/after in one run); the client is this one.")
    var clusterBinary: String?

    func run() async throws {
        if onlyScale {
            let cluster = try clusterBinary.map { URL(fileURLWithPath: $0) } ?? currentExecutable()
            let scale = try await manyNodesFigures(cluster) + dispatchCostFigures()
            print(Self.render(scale, peersNotCounted: [:], json: json,
                              title: "colony bench --only-scale (cluster: \(cluster.path))"))
            return
        }
        let port = try freeTCPPort()
        let url = "tcp://127.0.0.1:\(port)"
        let executable = try currentExecutable()
        let coordinator = try spawn(executable, ["coordinator", "--listen", url, "--state", ":memory:"])
        defer { stop(coordinator) }
        let node = try spawn(executable, ["node", "--coordinator", url, "--threads", "\(threads)", "--processes", "\(processes)",
                                          "--name", "bench-node", "--allow-exec"])
        defer { stop(node) }

        let colony = try await connectWithRetry(url)
        try await waitForNode(colony)
        var figures: [(String, Double)] = []

        // W0: the floor under W2 on this box: one nng request/reply round trip through the
        // same wrapper (REQ context here, REP context in the coordinator's serving pattern).
        figures.append(contentsOf: try await nngRoundTripFloor())

        // Warm-up: first connections, allocations, JIT-free but cache-cold paths.
        _ = try await colony.map("echo", Array(0..<2000), as: Int.self)

        // W1
        let clock = ContinuousClock()
        let inputs = Array(0..<w1Tasks)
        var start = clock.now
        let echoed = try await colony.map("echo", inputs, as: Int.self)
        let w1Seconds = (clock.now - start).inSeconds
        guard echoed == inputs else { throw CLIError("W1: outputs differ from inputs") }
        figures.append(("w1_tasks_per_s", Double(w1Tasks) / w1Seconds))

        // W2: `run` (submit and wait in one request), then the two-step submit + result(of:).
        var latencies: [Double] = []
        latencies.reserveCapacity(w2Tasks)
        for i in 0..<w2Tasks {
            let t0 = clock.now
            let result = try await colony.runResult("echo", rawInput: Array("\(i)".utf8))
            latencies.append((clock.now - t0).inSeconds * 1e6)
            guard result.succeeded else { throw CLIError("W2: task failed: \(result.error)") }
        }
        latencies.sort()
        figures.append(("w2_p50_us", percentile(latencies, 0.50)))
        figures.append(("w2_p99_us", percentile(latencies, 0.99)))
        latencies.removeAll(keepingCapacity: true)
        for i in 0..<w2Tasks {
            let t0 = clock.now
            let id = try await colony.submit("echo", input: i)
            _ = try await colony.result(of: id)
            latencies.append((clock.now - t0).inSeconds * 1e6)
        }
        latencies.sort()
        figures.append(("w2_two_step_p50_us", percentile(latencies, 0.50)))
        figures.append(("w2_two_step_p99_us", percentile(latencies, 0.99)))

        // W3
        start = clock.now
        let serialCount = PrimesHandler.countPrimes(in: 0..<w3Limit)
        let serialSeconds = (clock.now - start).inSeconds
        let step = (w3Limit + 63) / 64
        let ranges = stride(from: 0, to: w3Limit, by: step).map { PrimesHandler.Range(lo: $0, hi: min($0 + step, w3Limit)) }
        start = clock.now
        let counts = try await colony.map(PrimesHandler.self, ranges)
        let w3Seconds = (clock.now - start).inSeconds
        let total = counts.reduce(0, +)
        guard total == serialCount else { throw CLIError("W3: cluster counted \(total) primes, serial loop \(serialCount)") }
        figures.append(("w3_wall_s", w3Seconds))
        figures.append(("w3_serial_s", serialSeconds))
        figures.append(("w3_speedup", serialSeconds / w3Seconds))
        figures.append(("w3_primes", Double(total)))
        // The same in the process pool: each task's input and result cross one more pipe hop.
        start = clock.now
        let inChildren = try await colony.map(PrimesHandler.name, ranges, as: Int.self, options: TaskOptions(pool: .process))
        let w3ProcessSeconds = (clock.now - start).inSeconds
        guard inChildren.reduce(0, +) == serialCount else { throw CLIError("W3 (process pool): counted \(inChildren.reduce(0, +)) primes, serial loop \(serialCount)") }
        figures.append(("w3_process_wall_s", w3ProcessSeconds))
        figures.append(("w3_process_speedup", serialSeconds / w3ProcessSeconds))

        // W4: 200 tasks x 100 increments of one counter, applied with each task's result.
        let counter = colony.counter("bench-w4")
        _ = try await counter.set(0)
        start = clock.now
        _ = try await colony.map(CountHandler.self, Array(repeating: CountHandler.Input(counter: "bench-w4", times: 100), count: 200))
        let w4Seconds = (clock.now - start).inSeconds
        let w4Final = try await counter.get()
        figures.append(("w4_incr_per_s", 20_000 / w4Seconds))
        figures.append(("w4_final", Double(w4Final)))

        // W5: 200 sleeps, 90% 1 ms and 10% 50 ms (fixed seed), makespan over sum / slots.
        var random = SplitMix64(seed: 42)
        let sleeps = (0..<200).map { _ in random.next() % 10 == 0 ? 0.050 : 0.001 }
        start = clock.now
        // On threads: the sleeps stand for work that holds a slot (`sleep` defaults to io slots).
        _ = try await colony.map("sleep", sleeps, as: Double.self, options: TaskOptions(pool: .thread))
        let w5Makespan = (clock.now - start).inSeconds
        let w5Ideal = sleeps.reduce(0, +) / Double(threads)
        figures.append(("w5_makespan_s", w5Makespan))
        figures.append(("w5_ideal_s", w5Ideal))
        figures.append(("w5_ratio", w5Makespan / w5Ideal))

        // W6: commands `echo` through `colony map` (the whole command, as a user runs it), and
        // the peers on the same inputs; `echo` rather than `true` so that every run shows, by
        // its output, that it ran each command.
        let w6Inputs = (1...max(1, w6Tasks)).map(String.init)
        let map = try ProgramRun(executable.path, ["map", "--coordinator", url, "--", "echo"],
                                 input: w6Inputs.map { $0 + "\n" }.joined(), timeout: BenchPeer.timeout)
        guard map.status == 0 else { throw CLIError("W6: colony map exited with status \(map.status)") }
        if let problem = ProgramRun.echoProblem(map.stdout, inputs: w6Inputs, ordered: true) { throw CLIError("W6: colony map \(problem)") }
        figures.append(("w6_tasks_per_s", Double(w6Inputs.count) / map.seconds))
        var peersNotCounted: [String: String] = [:]
        for peer in [BenchPeer.xargs, .gnuParallel] {
            switch peer.measure(inputs: w6Inputs) {
            case .tasksPerSecond(let rate): figures.append((peer.key, rate))
            case .notCounted(let reason): peersNotCounted[peer.key] = reason
            }
        }
        let pipeAndFetch = try await BenchPipeWorkloads(executable: executable, coordinatorURL: url).run(colony)
        figures.append(contentsOf: pipeAndFetch.values)
        peersNotCounted.merge(pipeAndFetch.notCounted) { $1 }

        figures.append(("coordinator_peak_rss_mib", peakRSSMiB(coordinator.processIdentifier)))
        figures.append(("node_peak_rss_mib", peakRSSMiB(node.processIdentifier)))
        await colony.close()
        stop(node)
        stop(coordinator)
        let cluster = clusterBinary.map { URL(fileURLWithPath: $0) } ?? executable
        figures.append(contentsOf: try await balancingFigures(cluster))
        if !skipDurability { figures.append(contentsOf: try await durabilityFigures(executable)) }
        if !skipScale {
            figures.append(contentsOf: try await manyNodesFigures(cluster))
            figures.append(contentsOf: dispatchCostFigures())
        }
        if peers {
            let pools = poolPeerFigures(colony: figures)
            figures.append(contentsOf: pools.values)
            peersNotCounted.merge(pools.notCounted) { first, _ in first }
        }

        print(Self.render(figures, peersNotCounted: peersNotCounted, json: json,
                          title: "colony bench (coordinator, 1 node with \(threads) thread slots, client: separate processes over \(url))"))
    }

    /// The figures as one JSON object, or as a table under `title`.
    static func render(_ figures: [(String, Double)], peersNotCounted: [String: String], json: Bool, title: String) -> String {
        if json {
            let body = figures.map { key, value in
                let text = abs(value) >= 100 || value == value.rounded() ? String(Int(value.rounded())) : String(format: "%.3f", value)
                return "\"\(key)\": \(text)"
            }.joined(separator: ", ")
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            let notCounted = (try? String(decoding: encoder.encode(peersNotCounted), as: UTF8.self)) ?? "{}"
            return "{\(body), \"peers_not_counted\": \(notCounted)}"
        }
        var lines = [title]
        for (key, value) in figures {
            lines.append("  \(key.padding(toLength: 34, withPad: " ", startingAt: 0)) \(String(format: value >= 100 ? "%.0f" : "%.3f", value))")
        }
        for (key, reason) in peersNotCounted.sorted(by: { $0.key < $1.key }) {
            lines.append("  \(key.padding(toLength: 34, withPad: " ", startingAt: 0)) not counted: \(reason)")
        }
        return lines.joined(separator: "\n")
    }

    /// p50/p99 of 2,000 sequential 64-byte request/reply round trips over tcp loopback, through
    /// Colony's NNG wrapper, with the replier in a child process (`colony bench-echo-server`
    /// would be one more command; the coordinator answers a malformed request with an error
    /// reply, which is exactly an echo of the cheapest kind).
    private func nngRoundTripFloor() async throws -> [(String, Double)] {
        let port = try freeTCPPort()
        let url = "tcp://127.0.0.1:\(port)"
        let server = try spawn(try currentExecutable(), ["coordinator", "--listen", url, "--state", ":memory:"])
        defer { stop(server) }
        let socket = try Socket(.req)
        defer { socket.close() }
        var connected = false
        for _ in 0..<100 where !connected {
            if (try? socket.dial(url)) != nil {
                connected = true
            } else {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        guard connected else { throw CLIError("W0: the echo peer did not start") }
        let context = try socket.openContext()
        let payload = [UInt8](repeating: 0xAB, count: 64)
        let clock = ContinuousClock()
        var samples: [Double] = []
        for i in 0..<2200 {
            let t0 = clock.now
            _ = try await context.request(payload, timeout: .seconds(5))
            if i >= 200 { samples.append((clock.now - t0).inSeconds * 1e6) }
        }
        samples.sort()
        return [("w0_nng_rtt_p50_us", percentile(samples, 0.5)), ("w0_nng_rtt_p99_us", percentile(samples, 0.99))]
    }

    /// W5b and W5c on 2 nodes x 2 thread slots. W5b: after a burst of 2,000 echo tasks (which
    /// teaches the nodes to prefetch), 8 x sleep 1: makespan (ideal 2.0 s). W5c: 400 sleeps,
    /// every tenth 50 ms and the rest 1 ms: makespan over the ideal (total / 4 slots).
    private func balancingFigures(_ executable: URL) async throws -> [(String, Double)] {
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
    private func durabilityFigures(_ executable: URL) async throws -> [(String, Double)] {
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


    private func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.down)))]
    }

    func freeTCPPort() throws -> Int {
        let probe = try Socket(.rep)
        let listener = try probe.listen("tcp://127.0.0.1:0")
        defer { probe.close() }
        guard let port = listener.boundPort else { throw CLIError("could not find a free TCP port") }
        return port
    }

    func currentExecutable() throws -> URL {
        let path = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        return URL(fileURLWithPath: path)
    }

    func spawn(_ executable: URL, _ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    func stop(_ process: Process) {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    func connectWithRetry(_ url: String) async throws -> ColonyClient {
        var lastError: (any Error)?
        for _ in 0..<100 {
            var options = ColonyClient.Options()
            // The spawned coordinator inherits $COLONY_TOKEN, if set; so does this client.
            options.token = ProcessInfo.processInfo.environment["COLONY_TOKEN"] ?? ""
            do { return try ColonyClient(connect: url, options: options) } catch {
                lastError = error
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        throw CLIError("benchmark coordinator did not start: \(lastError.map { "\($0)" } ?? "unknown")")
    }

    private func waitForNode(_ colony: ColonyClient) async throws {
        for _ in 0..<200 {
            if try await !colony.status().nodes.isEmpty { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw CLIError("benchmark node did not join within 10 s")
    }

    func peakRSSMiB(_ pid: Int32) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kib = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return 0 }
        return kib / 1024
    }
}

extension ColonyClient {
    /// The status, retrying while the coordinator is still starting (recovering).
    func statusWhenUp() async throws -> ClusterStatus {
        let deadline = ContinuousClock.now + .seconds(120)
        while true {
            do { return try await status() } catch {
                guard ContinuousClock.now < deadline else { throw error }
                try await Task.sleep(for: .milliseconds(5))
            }
        }
    }
}
