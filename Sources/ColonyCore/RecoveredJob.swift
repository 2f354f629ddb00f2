import ColonyModel

/// A job as the journal restores it (its tasks come with their rows).
public struct RecoveredJob: Sendable, Equatable {
    public var id: JobID
    public var name: String?
    public var detached: Bool
    public var cancelled: Bool
    public init(id: JobID, name: String?, detached: Bool, cancelled: Bool) {
        self.id = id
        self.name = name
        self.detached = detached
        self.cancelled = cancelled
    }
}
