import Foundation

// The JSON the HTTP API answers with, as types: the keys are written once, here, and a reply
// cannot carry a value JSON has no form for.

/// `{"error": "..."}`: every refusal.
struct ErrorReplyBody: Encodable {
    var error: String
}

/// `{"ids": [...]}`: tasks accepted by a submit.
struct SubmittedBody: Encodable {
    var ids: [UInt64]
}

/// `{"id": N, "state": "unfinished"}`: a result asked for before its task finished.
struct UnfinishedBody: Encodable {
    var id: UInt64
    var state = "unfinished"
}

/// A finished task's result: its output as text (or base64 when it is not UTF-8), or its error.
struct ResultBody: Encodable {
    var id: UInt64
    var attempt: UInt32
    var node: String
    /// succeeded, failed or cancelled.
    var state: String
    var runMs: Double
    var output: String?
    var outputBase64: String?
    var error: String?
    var failure: String?

    enum CodingKeys: String, CodingKey {
        case id, attempt, node, state, output, error, failure
        case runMs = "run_ms"
        case outputBase64 = "output_base64"
    }
}

/// A counter after a read or a change; `swapped` for a compare-and-set, `previous` for a set.
struct CounterBody: Encodable {
    var name: String
    var value: Int64
    var swapped: Bool?
    var previous: Int64?
}
