import Colony
import ColonyModel
import ColonyNode
import Foundation
import NNG

/// W8 and W9 of `colony bench`, beside their Python peers (bench/io_peers.py) in the same run.
///
/// W8: `fetches` fetches from a local HTTP server that answers after 50 ms, on the bench node
///     (2 thread slots), median wall time of `w8Runs` runs; the peers: ThreadPoolExecutor(32) with
///     urllib, and asyncio (aiohttp, or the stdlib's streams without it).
/// W9: the mean of 1...`numbers` in `chunks` chunks through `colony map --pipe` (awk per
///     chunk, the whole command as a user runs it, reading its input file), wall time; the
///     peer: ProcessPoolExecutor(2) over the same chunks of the same file.
struct BenchPipeWorkloads {
    let executable: URL
    let coordinatorURL: String
    var fetches = 400
    var numbers = 10_000_000
    var chunks = 10

    /// Milliseconds the W8 server waits before it answers.
    static let answerDelayMilliseconds = 50
    /// W8 runs per contender; each figure is the median (one run is ~0.1 s, mostly the box's
    /// noise when taken alone).
    static let w8Runs = 5

    struct Figures {
        var values: [(String, Double)] = []
        /// Figures not counted, by key, with the reason.
        var notCounted: [String: String] = [:]
    }

    /// What bench/io_peers.py prints.
    private struct PeerFigures: Decodable {
        var w8PythonThreads32WallS: Double?
        var w8PythonAsyncioWallS: Double?
        var w8PythonAsyncioClient: String?
        var w9PythonProcesses2WallS: Double?
        var w9PythonMean: Double?
        var notCounted: [String: String]?

        enum CodingKeys: String, CodingKey {
            case w8PythonThreads32WallS = "w8_py_threads32_wall_s"
            case w8PythonAsyncioWallS = "w8_py_asyncio_wall_s"
            case w8PythonAsyncioClient = "w8_py_asyncio_client"
            case w9PythonProcesses2WallS = "w9_py_processes2_wall_s"
            case w9PythonMean = "w9_py_mean"
            case notCounted = "not_counted"
        }
    }

    func run(_ colony: ColonyClient) async throws -> Figures {
        var figures = Figures()
        let server = try SlowHTTPServer(delayMilliseconds: Self.answerDelayMilliseconds)
        defer { server.stop() }
        let url = server.url
        let clock = ContinuousClock()

        // W8
        _ = try await colony.map(FetchHandler.name, [FetchHandler.Input(url: url)], as: FetchHandler.Output.self)
        var walls: [Double] = []
        for _ in 0..<Self.w8Runs {
            let start = clock.now
            let answers = try await colony.map(FetchHandler.name, Array(repeating: FetchHandler.Input(url: url), count: fetches), as: FetchHandler.Output.self)
            walls.append((clock.now - start).inSeconds)
            guard answers.allSatisfy({ $0.status == 200 && $0.body == "ok" }) else { throw CLIError("W8: a fetch did not get the server's answer") }
        }
        let w8Seconds = walls.sorted()[walls.count / 2]
        figures.values.append(("w8_fetch_wall_s", w8Seconds))

        // W9
        let file = NSTemporaryDirectory() + "colony-bench-w9-\(ProcessInfo.processInfo.processIdentifier).txt"
        defer { try? FileManager.default.removeItem(atPath: file) }
        guard FileManager.default.createFile(atPath: file, contents: Data((1...numbers).map { "\($0)\n" }.joined().utf8)) else {
            throw CLIError("W9: cannot write \(file)")
        }
        let linesPerChunk = (numbers + chunks - 1) / chunks
        let map = try ProgramRun(executable.path, ["map", "--coordinator", coordinatorURL, "--pipe", "-N", "\(linesPerChunk)", "--inputs", file,
                                                   "--", "awk", "{s+=$1} END {printf \"%.17g %d\\n\", s, NR}"],
                                 input: "", timeout: BenchPeer.timeout)
        guard map.status == 0 else { throw CLIError("W9: colony map --pipe exited with status \(map.status)") }
        let parts = map.stdout.split(separator: "\n").map { $0.split(separator: " ") }
        let sum = parts.compactMap { $0.first.flatMap { Double($0) } }.reduce(0, +)
        let count = parts.compactMap { $0.last.flatMap { Int($0) } }.reduce(0, +)
        let expected = Double(numbers + 1) / 2
        guard parts.count == chunks, count == numbers, sum / Double(count) == expected else {
            throw CLIError("W9: colony map --pipe gave \(parts.count) chunks, \(count) numbers, mean \(sum / Double(max(count, 1))); expected \(chunks), \(numbers), \(expected)")
        }
        figures.values.append(("w9_pipe_wall_s", map.seconds))

        // The peers, on the same server and the same file.
        let peerKeys = ["w8_py_threads32_wall_s", "w8_py_asyncio_wall_s", "w9_py_processes2_wall_s"]
        guard let script = Self.peerScript else {
            for key in peerKeys { figures.notCounted[key] = "bench/io_peers.py not found (run colony bench from the repository)" }
            return figures
        }
        guard let python = ProgramRun.find("python3") else {
            for key in peerKeys { figures.notCounted[key] = "no python3 on PATH" }
            return figures
        }
        let peers = try? ProgramRun(python, [script, "--w8", url, "--w8-fetches", "\(fetches)", "--w8-runs", "\(Self.w8Runs)", "--w9", file, "--w9-chunks", "\(chunks)"],
                                    input: "", timeout: BenchPeer.timeout)
        guard let peers, peers.status == 0, let reported = try? JSONDecoder().decode(PeerFigures.self, from: Data(peers.stdout.utf8)) else {
            for key in peerKeys { figures.notCounted[key] = "bench/io_peers.py failed (status \(peers.map { "\($0.status)" } ?? "not run"))" }
            return figures
        }
        for (key, reason) in reported.notCounted ?? [:] { figures.notCounted[key] = reason }
        if let wall = reported.w8PythonThreads32WallS { figures.values.append(("w8_py_threads32_wall_s", wall)) }
        if let wall = reported.w8PythonAsyncioWallS {
            // Named for the client: aiohttp, or the stdlib's asyncio streams.
            let key = reported.w8PythonAsyncioClient == "aiohttp" ? "w8_py_aiohttp_wall_s" : "w8_py_asyncio_wall_s"
            figures.values.append((key, wall))
            figures.values.append(("w8_vs_asyncio", w8Seconds / wall))
        }
        if let wall = reported.w9PythonProcesses2WallS {
            if reported.w9PythonMean == expected {
                figures.values.append(("w9_py_processes2_wall_s", wall))
                figures.values.append(("w9_vs_python", map.seconds / wall))
            } else {
                figures.notCounted["w9_py_processes2_wall_s"] = "mean \(reported.w9PythonMean ?? .nan), not \(expected)"
            }
        }
        return figures
    }

    /// bench/io_peers.py (see `benchScript`).
    static var peerScript: String? { benchScript("io_peers.py") }

    /// A script of the repository's `bench/`: in the working directory's, or in a folder above
    /// the executable (`.build/release/colony` in a checkout).
    static func benchScript(_ name: String) -> String? {
        var candidates = [FileManager.default.currentDirectoryPath + "/bench/" + name]
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            var folder = URL(fileURLWithPath: path).deletingLastPathComponent()
            for _ in 0..<5 {
                candidates.append(folder.appendingPathComponent("bench/" + name).path)
                folder = folder.deletingLastPathComponent()
            }
        }
        return candidates.first { FileManager.default.fileExists(atPath: $0) }
    }

}
