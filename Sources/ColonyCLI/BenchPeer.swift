import Foundation

/// A program measured beside Colony in the same `colony bench` run (W6: `xargs -P2`, GNU
/// `parallel -j2`, each running `echo` once per input). Its figure counts only when the program
/// is the one named and did the work: another program under the same name (moreutils'
/// `parallel` runs nothing and exits 0 at once) or one that did not print every input once
/// gets no figure, and a one-line reason instead.
struct BenchPeer: Sendable {
    /// The figure's key in `colony bench --json`.
    let key: String
    /// Looked up on PATH.
    let program: String
    let arguments: [String]
    /// What the first line of `PROGRAM --version` must contain, and the reason given when it
    /// does not; nil: any program of that name (its outputs still have to be right).
    let identity: (mark: String, otherwise: String)?

    static let xargs = BenchPeer(key: "w6_xargs_p2_tasks_per_s", program: "xargs", arguments: ["-P2", "-n1", "echo"], identity: nil)
    static let gnuParallel = BenchPeer(key: "w6_parallel_j2_tasks_per_s", program: "parallel", arguments: ["-j2", "echo"],
                                       identity: ("GNU parallel", "not GNU parallel (moreutils?)"))

    enum Outcome: Equatable {
        case tasksPerSecond(Double)
        case notCounted(reason: String)
    }

    /// Longest a peer may take for the whole workload (GNU parallel does about 400 commands/s here).
    static let timeout = Duration.seconds(600)

    /// Runs the peer over `inputs` (one `echo` each) and judges what it did.
    func measure(inputs: [String]) -> Outcome {
        guard let path = ProgramRun.find(program) else { return .notCounted(reason: "no \(program) on PATH") }
        if let identity {
            let version = try? ProgramRun(path, ["--version"], input: "", timeout: .seconds(10))
            let firstLine = version?.stdout.split(separator: "\n").first ?? ""
            guard version?.status == 0, firstLine.contains(identity.mark) else { return .notCounted(reason: identity.otherwise) }
        }
        let run: ProgramRun
        do {
            run = try ProgramRun(path, arguments, input: inputs.map { $0 + "\n" }.joined(), timeout: Self.timeout)
        } catch {
            return .notCounted(reason: "\(error)")
        }
        guard run.status == 0 else { return .notCounted(reason: "exited with status \(run.status)") }
        if let problem = ProgramRun.echoProblem(run.stdout, inputs: inputs, ordered: false) { return .notCounted(reason: problem) }
        return .tasksPerSecond(Double(inputs.count) / run.seconds)
    }
}

/// One run of a program to its end, its input read from a file and its output written to one
/// (no pipe to fill or to break when the program stops reading).
struct ProgramRun {
    enum Failure: Error, CustomStringConvertible {
        case notStarted(String)
        case timedOut(seconds: Int64)

        var description: String {
            switch self {
            case .notStarted(let cause): "could not be started: \(cause)"
            case .timedOut(let seconds): "did not finish within \(seconds) s"
            }
        }
    }

    let status: Int32
    let stdout: String
    /// From start to exit.
    let seconds: Double

    init(_ path: String, _ arguments: [String], input: String, timeout: Duration) throws(Failure) {
        let files = NSTemporaryDirectory() + "colony-bench-\(UUID().uuidString)"
        defer {
            try? FileManager.default.removeItem(atPath: files + ".in")
            try? FileManager.default.removeItem(atPath: files + ".out")
        }
        guard FileManager.default.createFile(atPath: files + ".in", contents: Data(input.utf8)),
              FileManager.default.createFile(atPath: files + ".out", contents: nil),
              let inputFile = FileHandle(forReadingAtPath: files + ".in"),
              let outputFile = FileHandle(forWritingAtPath: files + ".out") else {
            throw .notStarted("cannot write its input and output files in \(NSTemporaryDirectory())")
        }
        defer {
            try? inputFile.close()
            try? outputFile.close()
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardInput = inputFile
        process.standardOutput = outputFile
        process.standardError = FileHandle.nullDevice
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        let clock = ContinuousClock()
        let start = clock.now
        do { try process.run() } catch { throw .notStarted("\(error)") }
        if exited.wait(timeout: .now() + .seconds(Int(timeout.components.seconds))) == .timedOut {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw .timedOut(seconds: timeout.components.seconds)
        }
        let elapsed = clock.now - start
        process.waitUntilExit()
        status = process.terminationStatus
        stdout = String(decoding: FileManager.default.contents(atPath: files + ".out") ?? Data(), as: UTF8.self)
        seconds = elapsed.inSeconds
    }

    /// The first executable `program` in a folder of $PATH.
    static func find(_ program: String) -> String? {
        let folders = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        return folders.map { "\($0)/\(program)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// What is wrong with the output of `echo` run once per input (nil: each input printed
    /// once, in input order when `ordered`).
    static func echoProblem(_ stdout: String, inputs: [String], ordered: Bool) -> String? {
        var lines = stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        guard lines.count == inputs.count else { return "printed \(lines.count) outputs for \(inputs.count) inputs" }
        let same = ordered ? lines == inputs : lines.sorted() == inputs.sorted()
        return same ? nil : "printed outputs that are not its inputs\(ordered ? " in input order" : "")"
    }
}
