/// A drain that ended at its deadline with work not handed back (the coordinator could not be
/// reached): the node stops anyway, and says what it could not hand back. Those tasks run
/// again elsewhere once the coordinator sees the node gone.
public struct DrainIncomplete: Error, Sendable, CustomStringConvertible {
    public var node: String
    public var coordinator: String
    /// Tasks stopped or never started that the coordinator did not take back.
    public var tasks: Int
    /// Results of finished tasks not delivered.
    public var results: Int
    /// Why the last pull failed, if one did.
    public var lastFailure: String?

    public var description: String {
        "node \(node) stopped at its drain deadline without handing back \(tasks) task(s) and \(results) result(s) to \(coordinator)"
            + (lastFailure.map { " (\($0))" } ?? "") + "; the coordinator runs them again elsewhere"
    }
}
