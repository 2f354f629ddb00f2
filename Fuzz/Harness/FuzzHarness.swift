import ColonyCoordinator
import ColonyWire
import Foundation

/// Drives the coordinator's request handling with arbitrary bytes and reports what went wrong.
///
/// One fuzzer input is a conversation with a fresh coordinator state: a sequence of frames,
/// each a 2-byte little-endian length and that many bytes of request (the last frame takes
/// what remains when its length runs past the end, so any byte string is an input). A frame of
/// length 0 is not a request: it closes connection `1 + index % 3` and runs the expiry pass, so
/// the fuzzer reaches the suspect-node and lease paths too.
///
/// What counts as a finding: a trap (libFuzzer sees the crash), a reply that is not a valid
/// reply envelope, or a broken invariant of the core after any step.
public enum FuzzHarness {
    /// The largest request the fuzzed coordinator takes: small, so the size check is reached.
    public static let messageBytesMax = 64 << 10

    /// Splits an input into its frames (see the type's comment).
    public static func frames(in input: [UInt8]) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        var index = 0
        while index < input.count {
            guard index + 2 <= input.count else {
                frames.append(Array(input[index...]))
                break
            }
            let length = Int(input[index]) | Int(input[index + 1]) << 8
            let start = index + 2
            let end = min(start + length, input.count)
            frames.append(Array(input[start..<end]))
            index = end
        }
        return frames
    }

    /// Joins requests into one input (the inverse of `frames`), e.g. to write seeds.
    public static func input(of requests: [[UInt8]]) -> [UInt8] {
        var bytes: [UInt8] = []
        for request in requests {
            let length = min(request.count, 0xFFFF)
            bytes.append(UInt8(length & 0xFF))
            bytes.append(UInt8(length >> 8))
            bytes.append(contentsOf: request.prefix(length))
        }
        return bytes
    }

    /// Runs one input against a fresh coordinator state; returns the problems found (empty: none).
    /// `trace` hears one line per step (what the reply was), for reading what an input does.
    public static func run(_ input: [UInt8], trace: (@Sendable (String) -> Void)? = nil) async -> [String] {
        var bounds = RequestHandler.Bounds()
        bounds.messageBytesMax = messageBytesMax
        // Nothing parks: a long poll would only make the fuzzer slow.
        bounds.longPollSecondsMax = 0
        bounds.resultsPerFetchMax = 64
        let handler = RequestHandler(bounds: bounds)
        var problems: [String] = []
        for (index, frame) in frames(in: input).enumerated() {
            let pipe = UInt32(1 + index % 3)
            if frame.isEmpty {
                await handler.connectionClosed(pipeID: pipe)
                await handler.expire()
            } else {
                let reply = await handler.handle(frame, pipeID: pipe)
                if let problem = replyProblem(reply) { problems.append("step \(index): \(problem)") }
                if let trace { trace("step \(index): \(frame.count) bytes -> \(describe(reply))") }
            }
            let broken = await handler.invariantViolations()
            if !broken.isEmpty {
                problems.append("step \(index): invariants broken: \(broken.joined(separator: "; "))")
            }
            if !problems.isEmpty { break }
        }
        return problems
    }

    static func describe(_ reply: [UInt8]) -> String {
        guard let envelope = try? Wire.decode(reply), let body = envelope.body else { return "undecodable reply" }
        if case .error(let error) = body { return "error \(error.code): \(error.message)" }
        return String(describing: body).prefix(160).replacingOccurrences(of: "\n", with: " ")
    }

    /// `replyProblem`, for the harness's own tests.
    public static func replyProblemForTesting(_ bytes: [UInt8]) -> String? { replyProblem(bytes) }

    /// nil when `bytes` is a reply envelope a client could read.
    static func replyProblem(_ bytes: [UInt8]) -> String? {
        let envelope: Colony_V1_Envelope
        do {
            envelope = try Wire.decode(bytes)
        } catch {
            return "the reply does not decode: \(error)"
        }
        switch envelope.body {
        case .submitReply, .pullReply, .fetchReply, .statusReply, .error, .counterReply, .limitReply, .cancelReply,
             .tasksReply, .drainReply, .logsReply, .jobReply:
            return nil
        case .submit, .pull, .fetch, .status, .counter, .limit, .cancel, .tasks, .result, .drain, .logs, .job, nil:
            return "the reply is a request: \(String(describing: envelope.body))"
        }
    }

    /// Conversations a real cluster has, for the fuzzer to start from.
    public static func seeds() -> [(name: String, input: [UInt8])] {
        var seeds: [(String, [UInt8])] = []

        func task(_ handler: String, _ input: String, configure: (inout Colony_V1_TaskSpec) -> Void = { _ in }) -> Colony_V1_TaskSpec {
            var spec = Colony_V1_TaskSpec()
            spec.handler = handler
            spec.input = Data(input.utf8)
            configure(&spec)
            return spec
        }
        func submit(_ tasks: [Colony_V1_TaskSpec], session: String = "s1") -> [UInt8] {
            var request = Colony_V1_SubmitRequest()
            request.session = session
            request.tasks = tasks
            return Wire.encode(.submit(request))
        }
        func node(_ name: String, threads: UInt32 = 2, processes: UInt32 = 1, draining: Bool = false) -> Colony_V1_NodeInfo {
            var info = Colony_V1_NodeInfo()
            info.name = name
            info.host = "h"
            info.threadSlots = threads
            info.processSlots = processes
            info.handlers = ["echo", "square", "count"]
            info.processHandlers = ["exec", "echo"]
            info.pid = 42
            info.draining = draining
            return info
        }
        func pull(_ info: Colony_V1_NodeInfo, results: [Colony_V1_TaskResult] = [], running: [UInt64] = [], acked: UInt64 = 0,
                  returned: [UInt64] = [], leaving: Bool = false) -> [UInt8] {
            var request = Colony_V1_PullRequest()
            request.node = info
            request.results = results
            request.running = running
            request.ackedDispatchSeq = acked
            request.prefetch = 1
            request.processPrefetch = 1
            request.returned = returned
            request.leaving = leaving
            return Wire.encode(.pull(request))
        }
        func result(_ id: UInt64, ok: Bool = true, node: String = "n1", counter: String? = nil) -> Colony_V1_TaskResult {
            var result = Colony_V1_TaskResult()
            result.id = id
            result.attempt = 1
            result.ok = ok
            result.node = node
            if ok { result.output = Data("out".utf8) } else { result.error = "boom" }
            if let counter {
                var op = Colony_V1_CounterOp()
                op.name = counter
                op.delta = 3
                result.counterOps = [op]
            }
            return result
        }
        func fetch(acked: [UInt64] = [], session: String = "s1") -> [UInt8] {
            var request = Colony_V1_FetchRequest()
            request.session = session
            request.maxResults = 10
            request.acked = acked
            return Wire.encode(.fetch(request))
        }
        func counter(_ op: Colony_V1_CounterRequest.Op, _ name: String, _ value: Int64 = 0, expected: Int64 = 0,
                     key: String = "") -> [UInt8] {
            var request = Colony_V1_CounterRequest()
            request.key = key
            request.op = op
            request.name = name
            request.value = value
            request.expected = expected
            return Wire.encode(.counter(request))
        }
        func limit(_ name: String, _ size: UInt32) -> [UInt8] {
            var request = Colony_V1_LimitRequest()
            request.name = name
            request.size = size
            return Wire.encode(.limit(request))
        }
        let closeAndExpire: [UInt8] = []

        // Submit, run, report, fetch with acknowledgement.
        seeds.append(("run-and-fetch", input(of: [
            submit([task("echo", "a"), task("square", "7") { $0.priority = 5 }]),
            pull(node("n1")),
            pull(node("n1"), results: [result(1), result(2, counter: "done")], acked: 1),
            fetch(),
            fetch(acked: [1, 2]),
            Wire.encode(.status(Colony_V1_StatusRequest())),
        ])))
        // Dependencies, retries, timeouts, pools, keys and labels.
        seeds.append(("dependencies-and-retries", input(of: [
            submit([task("echo", "first") { $0.maxAttempts = 3; $0.retryOnError = true; $0.key = "k#1" }]),
            submit([
                task("echo", "second") { $0.after = [1]; $0.timeoutMs = 50; $0.labels = ["a": "b"] },
                task("exec", "true") { $0.pool = .process; $0.key = "k#3" },
                task("batch", "x") { $0.pool = .default; $0.poolHandler = "exec" },
            ]),
            submit([task("echo", "first") { $0.key = "k#1" }]),
            pull(node("n1")),
            pull(node("n1"), results: [result(1, ok: false)], acked: 1),
            pull(node("n2", threads: 1, processes: 0)),
            closeAndExpire,
            pull(node("n1"), results: [result(1), result(3)], running: [2], acked: 2),
            fetch(),
        ])))
        // Limits, counters, cancellation, queries, drain.
        var tasksQuery = Colony_V1_TasksRequest()
        tasksQuery.state = "queued"
        tasksQuery.limit = 10
        var cancel = Colony_V1_CancelRequest()
        cancel.taskIds = [2, 99]
        cancel.session = "s2"
        var drain = Colony_V1_DrainRequest()
        drain.node = "n1"
        drain.deadlineMs = 10
        var resultQuery = Colony_V1_ResultRequest()
        resultQuery.taskID = 1
        seeds.append(("limits-counters-cancel-drain", input(of: [
            limit("db", 1),
            submit([task("echo", "1") { $0.uses = ["db"] }, task("echo", "2") { $0.uses = ["db"] }], session: "s2"),
            pull(node("n1")),
            counter(.add, "c", 5, key: "s2#c1"),
            counter(.add, "c", 5, key: "s2#c1"),
            counter(.compareAndSet, "c", 9, expected: 5),
            counter(.set, "d", -1),
            counter(.list, ""),
            Wire.encode(.tasks(tasksQuery)),
            Wire.encode(.cancel(cancel)),
            Wire.encode(.drain(drain)),
            pull(node("n1", draining: true), results: [result(1, node: "n1")], running: [], acked: 1, returned: [2], leaving: true),
            Wire.encode(.result(resultQuery)),
            fetch(session: "s2"),
        ])))
        // Live output: chunks on pulls (a gap, a stale attempt, an unknown task), read back.
        func chunk(_ id: UInt64, _ stream: Colony_V1_OutputStream, offset: UInt64, _ text: String, attempt: UInt32 = 1) -> Colony_V1_OutputChunk {
            var chunk = Colony_V1_OutputChunk()
            chunk.taskID = id
            chunk.attempt = attempt
            chunk.stream = stream
            chunk.offset = offset
            chunk.data = Data(text.utf8)
            return chunk
        }
        func withOutput(_ pullBytes: [UInt8], _ chunks: [Colony_V1_OutputChunk]) -> [UInt8] {
            guard var envelope = try? Wire.decode(pullBytes), case .pull(var request) = envelope.body else { return pullBytes }
            request.output = chunks
            envelope.body = .pull(request)
            return (try? envelope.serializedBytes()) ?? pullBytes
        }
        var logs = Colony_V1_LogsRequest()
        var cursor = Colony_V1_LogCursor()
        cursor.taskID = 1
        var unknown = Colony_V1_LogCursor()
        unknown.taskID = 77
        logs.tasks = [cursor, unknown]
        logs.waitMs = 1000
        seeds.append(("live-output", input(of: [
            submit([task("exec", "true") { $0.pool = .process }]),
            pull(node("n1")),
            withOutput(pull(node("n1")), [chunk(1, .stdout, offset: 0, "first\n"), chunk(1, .stderr, offset: 0, "err\n"),
                                          chunk(1, .stdout, offset: 20, "after a gap\n"), chunk(77, .stdout, offset: 0, "nobody")]),
            Wire.encode(.logs(logs)),
            withOutput(pull(node("n1"), results: [result(1)], acked: 1), [chunk(1, .stdout, offset: 0, "stale", attempt: 0),
                                                                          chunk(1, .unspecified, offset: 0, "?")]),
            Wire.encode(.logs(logs)),
        ])))
        // Things a hostile peer sends.
        var otherVersion = Colony_V1_Envelope()
        otherVersion.version = 2
        otherVersion.body = .status(Colony_V1_StatusRequest())
        seeds.append(("hostile", input(of: [
            (try? otherVersion.serializedBytes()) ?? [],
            [0xFF, 0xFF, 0xFF],
            Array(Wire.encode(.status(Colony_V1_StatusRequest())).dropLast()),
            Wire.encode(.fetchReply(Colony_V1_FetchReply())),
            submit([task("", "")]),
            counter(.add, "c", .max),
            counter(.add, "c", 1),
        ])))
        return seeds
    }
}
