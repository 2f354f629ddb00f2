import ColonyModel
import ColonyWire
import Foundation
import NNG

// One request and its reply over the client's context pool, and the pump that brings results.
extension ColonyClient {
    // MARK: Internals

    static func encode(_ input: some Encodable) throws(ColonyError) -> [UInt8] {
        do {
            return Array(try JSONEncoder().encode(input))
        } catch {
            throw .badInput("cannot encode \(type(of: input)) as JSON: \(error)")
        }
    }

    /// One request and its reply. A coordinator that answers UNAVAILABLE (its journal cannot
    /// be written: nothing was applied) is asked again until the patience runs out; resends are
    /// harmless (keys), and a map then rides through a full disk instead of failing while its
    /// work runs on.
    func request(_ body: Colony_V1_Envelope.OneOf_Body, patience: Duration? = nil) async throws(ColonyError) -> Colony_V1_Envelope.OneOf_Body {
        let patience = patience ?? options.patience
        let deadline = ContinuousClock.now + patience
        var refusals = 0
        while true {
            do {
                return try await exchange(body, patience: patience)
            } catch .unavailable(let reason) {
                refusals += 1
                let wait = Self.retryBackoff.delay(afterFailures: refusals)
                guard ContinuousClock.now + wait < deadline, !isClosed else { throw .unavailable(reason) }
                if refusals == 1 { options.onUnavailable?(reason) }
                try? await Task.sleep(for: wait)
            }
        }
    }

    /// One request/reply exchange on a free context.
    func exchange(_ body: Colony_V1_Envelope.OneOf_Body, patience: Duration) async throws(ColonyError) -> Colony_V1_Envelope.OneOf_Body {
        if isClosed { throw .closed }
        let bytes = Wire.encode(body, token: options.token)
        // nng drops an oversized message without a word (and the request would only time
        // out), so refuse it here with the reason.
        if bytes.count > colonyMessageBytesMax {
            throw .badInput("a request of \(bytes.count) bytes exceeds the \(colonyMessageBytesMax >> 20) MiB message limit; make the input smaller (pass a path or a URL instead of the data)")
        }
        let context = try await acquireContext()
        defer { releaseContext(context) }
        let replyBytes: [UInt8]
        do {
            replyBytes = try await context.request(bytes, timeout: patience, url: url)
        } catch {
            if isClosed { throw .closed }
            switch error {
            case .closed: throw .closed
            // The calling task was stopped (on nng: before its request went out).
            case .cancelled: throw .cancelled
            case .timedOut, .lost:
                throw .timedOut("no reply from the coordinator at \(url) within \(Self.format(patience)) (the client's patience: --patience or COLONY_PATIENCE)")
            case .failed(let failure): throw failure
            }
        }
        let envelope: Colony_V1_Envelope
        do {
            envelope = try Wire.decode(replyBytes)
        } catch {
            throw .protocolViolation("reply from \(url): \(error)")
        }
        if case .error(let refusal) = envelope.body {
            switch refusal.code {
            case .unavailable: throw .unavailable(refusal.message)
            case .notFound: throw .notFound(refusal.message)
            default: throw .refused(refusal.message)
            }
        }
        guard let reply = envelope.body else { throw .protocolViolation("empty reply from \(url)") }
        return reply
    }

    func acquireContext() async throws(ColonyError) -> Requester {
        if let context = idleContexts.popLast() { return context }
        if openedContexts < options.concurrentRequests {
            let context = try link.openRequester()
            openedContexts += 1
            return context
        }
        return await withCheckedContinuation { contextWaiters.append($0) }
    }

    func releaseContext(_ context: Requester) {
        if contextWaiters.isEmpty {
            idleContexts.append(context)
        } else {
            contextWaiters.removeFirst().resume(returning: context)
        }
    }

    func ensurePump() {
        guard !pumpRunning else { return }
        pumpRunning = true
        // The pump lives only while someone waits; it ends by itself when nobody does.
        Task { await self.pump() }
    }

    /// Fetches this session's results in batches (long poll) and hands them to waiters.
    func pump() async {
        var failures = Failures()
        while !isClosed {
            await pumpWhileWaited(&failures)
            guard !unacked.isEmpty && !isClosed else { break }
            // Nobody waits any more: let the coordinator forget what arrived. (A wait that
            // began meanwhile keeps this pump going: `ensurePump` saw it running.)
            var ack = Colony_V1_FetchRequest()
            ack.session = session
            ack.acked = unacked
            ack.maxResults = 0
            if (try? await request(.fetch(ack))) != nil { unacked = [] }
            if waiting.isEmpty { break }
        }
        pumpRunning = false
    }

    /// Fetches that failed in a row, and since when.
    struct Failures {
        var count = 0
        var since: ContinuousClock.Instant?
    }

    /// `12 s`, `1.5 s` (for messages).
    public static func format(_ duration: Duration) -> String {
        formatSeconds(duration.inSeconds) + " s"
    }

    func pumpWhileWaited(_ failures: inout Failures) async {
        while !waiting.isEmpty && !isClosed {
            let generation = submitGeneration
            var fetch = Colony_V1_FetchRequest()
            fetch.session = session
            fetch.maxResults = 8192
            fetch.waitMs = options.fetchWaitMilliseconds
            fetch.acked = unacked
            let attemptStarted = ContinuousClock.now
            do throws(ColonyError) {
                let reply = try await request(.fetch(fetch))
                guard case .fetchReply(let fetched) = reply else {
                    throw ColonyError.protocolViolation("the coordinator answered a fetch with something else")
                }
                failures = Failures()
                // The coordinator keeps these until the next fetch says they arrived.
                unacked = fetched.results.map(\.id)
                for wire in fetched.results { deliver(TaskResult(wire: wire)) }
                if !fetched.results.isEmpty && fetched.results.count < 64 && fetched.pending > 0 {
                    // More results are on their way: let a few gather, so that a long map
                    // costs a fetch per batch rather than one per result.
                    try? await Task.sleep(for: .milliseconds(1))
                }
                if fetched.pending == 0 && fetched.results.isEmpty && generation == submitGeneration {
                    // Nothing of ours is unfinished at the coordinator: whoever still waits
                    // waits for a task it will never report to this session.
                    for (id, gather) in waiting { gather.fail(.unknownTask(id)) }
                    waiting = [:]
                }
            } catch {
                failures.count += 1
                if case .closed = error { break }
                let now = ContinuousClock.now
                let since = failures.since ?? attemptStarted
                failures.since = since
                // A coordinator that is restarting, stopped or cut off is waited for, up to the
                // patience (it keeps the session's tasks in its journal); one that answers with
                // nonsense is not.
                let transient: Bool = switch error {
                case .unreachable, .timedOut, .transport, .unavailable: true
                default: false
                }
                if transient ? now - since >= options.patience : failures.count >= 3 {
                    for gather in waiting.values { gather.fail(error) }
                    waiting = [:]
                    break
                }
                try? await Task.sleep(for: Self.retryBackoff.delay(afterFailures: failures.count))
            }
        }
    }

    func deliver(_ result: TaskResult) {
        if let gather = waiting.removeValue(forKey: result.id) {
            gather.deliver(result)
        } else if unwanted.remove(result.id) == nil {
            arrived[result.id] = result
        }
    }

    /// The results of `ids` will not be asked for (their submitter ended without waiting for
    /// them): drops those that arrived and, as they come, the others. Without it, results a
    /// waiter's fetch brings along for tasks nobody waits for would be kept for the life of
    /// the client (a node's link for handlers' subtasks lives as long as the node).
    public func forget(_ ids: [TaskID]) {
        for id in ids where waiting[id] == nil {
            if arrived.removeValue(forKey: id) == nil { unwanted.insert(id) }
        }
    }

    /// Results that arrived and wait for someone to ask for them.
    public var resultsHeld: Int { arrived.count }
}
