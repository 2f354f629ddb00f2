import CSQLite
import ColonyCore
import ColonyModel
import Foundation
import Synchronization

/// Why the state folder cannot be used; one line for users.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The coordinator's journal: its durable state in SQLite (WAL mode) in a state folder.
///
/// `append` queues records and returns a ticket at once; one writer thread commits whatever
/// has queued in one transaction (group commit: while a commit is in progress the next batch
/// gathers), and `waitDurable(ticket)` returns once the records up to the ticket are on disk.
/// The coordinator answers a request only after that, so nothing it acknowledged is lost by a
/// crash. Rows hold state, not history (see `JournalRecord`): the file stays as large as the
/// live tasks, and SQLite's automatic WAL checkpoints keep the log bounded.
///
/// A commit that fails (a full disk, an I/O error) is rolled back and its records, and every
/// record queued after them, are dropped: their waiters are refused. The store then refuses
/// every append until `retryAfterFailure()` succeeds, so nothing refused ever reaches the disk.
/// The coordinator reloads its state from the journal when it sees `failure` (its memory held
/// the refused changes); `epoch` counts those reloads, so a reply whose request straddled one
/// is refused too (see `waitDurable(_:since:)`).
public final class Store: @unchecked Sendable {
    /// The layout of the state folder this build reads and writes.
    public static let formatVersion = 1
    static let formatName = "colony-state"

    public let path: String
    /// What the writer did so far.
    public struct Statistics: Sendable, Equatable {
        public var commits: UInt64 = 0
        public var records: UInt64 = 0
        public var commitMicros: UInt64 = 0
        public var lastError: String?
        /// Commits that failed (each one's records refused).
        public var failedCommits: UInt64 = 0
    }

    /// History the journal had lost when it was opened with `acceptingJournalLoss`.
    public struct JournalLoss: Sendable, Equatable {
        /// The last commit the database holds.
        public var held: UInt64
        /// The last commit that had been made.
        public var made: UInt64
    }

    /// Set when the store was opened accepting lost history (the coordinator logs it).
    public let acceptedLoss: JournalLoss?
    /// The lowest next task id recovery may give (see `CommitMark`).
    let nextIDFloor: UInt64

    let database: Database
    let lock: StateFolderLock
    let mark: CommitMark
    let queue = Mutex(Queue())
    let wake = NSCondition()
    var writer: Thread?

    struct Queue {
        var pending: [JournalRecord] = []
        var nextID: TaskID = 1
        var appended: UInt64 = 0
        var durable: UInt64 = 0
        var failed: String?
        var epoch: UInt64 = 0
        var commit: UInt64 = 0
        var closing = false
        var closed = false
        var waiters: [(ticket: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
        var statistics = Statistics()
    }

    /// Opens (creating if needed) the state folder `directory` and its `colony.db`, locked
    /// for this store's life. Refuses a folder another coordinator holds, a folder written by
    /// another format, and a journal that lost committed history (unless
    /// `acceptingJournalLoss`), each with one line.
    public init(directory: String, acceptingJournalLoss: Bool = false) throws(StoreError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw StoreError("cannot create the state folder \(directory): \(error.localizedDescription)")
        }
        // The lock first: nothing in the folder is read or written by a second coordinator.
        lock = try StateFolderLock(directory: directory)
        mark = try CommitMark(directory: directory)
        path = (directory as NSString).appendingPathComponent("colony.db")
        database = try Database(path: path)
        // Pages freed by deleted rows go back to the file system (see `vacuumIfMostlyFree`).
        // Only a new database takes this before its first table; an older one is converted
        // below, once. The WAL is cut back to 64 MiB after each checkpoint.
        try database.execute("""
            PRAGMA auto_vacuum=INCREMENTAL;
            PRAGMA journal_size_limit=67108864;
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=FULL;
            CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS tasks(
                id INTEGER PRIMARY KEY, session TEXT NOT NULL, handler TEXT NOT NULL, input BLOB NOT NULL,
                priority INTEGER NOT NULL, uses BLOB, after BLOB, max_attempts INTEGER NOT NULL,
                retry_on_error INTEGER NOT NULL, timeout REAL, labels BLOB, pool TEXT NOT NULL, pool_handler TEXT, key TEXT,
                outcome TEXT, attempt INTEGER, output BLOB, error TEXT, node TEXT, run_micros INTEGER);
            CREATE TABLE IF NOT EXISTS counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS limits(name TEXT PRIMARY KEY, size INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS limit_high_water(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS counter_keys(
                seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, value INTEGER NOT NULL, swapped INTEGER NOT NULL);
            """)
        let format = try database.scalarText("SELECT value FROM meta WHERE key = 'format'")
        let expected = "\(Self.formatName) \(Self.formatVersion)"
        if let format {
            guard format == expected else {
                throw StoreError("the state folder \(directory) was written in format '\(format)'; this coordinator reads '\(expected)' (move the folder aside or give another --state)")
            }
        } else {
            try database.execute("INSERT INTO meta(key, value) VALUES('format', '\(expected)')")
        }
        if try database.scalarText("PRAGMA auto_vacuum") != "2" {
            // A journal from before incremental vacuum: VACUUM rewrites it with the mode on
            // (a one-time cost in proportion to its live rows).
            try database.execute("PRAGMA auto_vacuum=INCREMENTAL; VACUUM;")
        }
        // Columns added within format 1 (an older coordinator reading the folder ignores them).
        if try database.scalarText("SELECT count(*) FROM pragma_table_info('tasks') WHERE name = 'detached'") == "0" {
            try database.execute("ALTER TABLE tasks ADD COLUMN detached INTEGER NOT NULL DEFAULT 0")
        }
        if try database.scalarText("SELECT count(*) FROM pragma_table_info('tasks') WHERE name = 'resources'") == "0" {
            try database.execute("ALTER TABLE tasks ADD COLUMN resources BLOB")
        }
        try JobTables.create(in: database)
        let held = try database.scalarText("SELECT value FROM meta WHERE key = 'commit'").flatMap(UInt64.init) ?? 0
        var loss: JournalLoss?
        let marked = mark.recorded()
        if let made = marked?.commit, made > held {
            guard acceptingJournalLoss else {
                throw StoreError("the journal in \(directory) lost committed history: it ends at commit \(held) but commit \(made) had been made (colony.db-wal deleted or cut short, or colony.db replaced?); start with --accept-journal-loss to run with what it holds")
            }
            loss = JournalLoss(held: held, made: made)
        }
        acceptedLoss = loss
        let heldNextID = try database.scalarText("SELECT value FROM meta WHERE key = 'next_id'").flatMap(UInt64.init) ?? 1
        // Ids handed out before a loss are not handed out again.
        nextIDFloor = max(heldNextID, marked?.nextID ?? 0)
        // From here on the side file follows this database (a new folder, an accepted loss,
        // or a folder from before the side file existed).
        if marked?.commit != held || marked?.nextID != nextIDFloor { mark.record(held, nextID: nextIDFloor, sync: true) }
        queue.withLock { $0.commit = held }
    }

    /// Starts the writer thread.
    public func start() {
        let thread = Thread { [self] in self.writeLoop() }
        thread.name = "colony-journal"
        thread.start()
        writer = thread
    }

    /// Queues `records` (and the next id to hand out); returns the ticket to wait for.
    @discardableResult
    public func append(_ records: [JournalRecord], nextID: TaskID) -> UInt64 {
        guard !records.isEmpty else { return queue.withLock { $0.appended } }
        let ticket = queue.withLock { state -> UInt64 in
            // Refused: never written, even once the journal can be written again.
            guard state.failed == nil else {
                state.appended += 1
                return state.appended
            }
            state.pending.append(contentsOf: records)
            state.nextID = nextID
            state.appended += 1
            return state.appended
        }
        wake.lock()
        wake.signal()
        wake.unlock()
        return ticket
    }

    /// The ticket of the last `append`.
    public var lastTicket: UInt64 { queue.withLock { $0.appended } }

    /// The number of reloads after failed commits so far; take it before a request touches the
    /// state and give it to `waitDurable(_:since:)`.
    public var epoch: UInt64 { queue.withLock { $0.epoch } }

    /// Why the last commit failed, while the journal refuses appends (nil: it takes them).
    public var failure: String? { queue.withLock { $0.failed } }

    /// Returns once every record up to `ticket` is committed; throws if they were refused
    /// (a failed commit), or if the state was reloaded since `epoch` (the request's changes
    /// may have been undone): the coordinator must then not acknowledge.
    public func waitDurable(_ ticket: UInt64, since epoch: UInt64? = nil) async throws(StoreError) {
        // Most replies find their records committed already: no continuation for those.
        let settled: StoreError?? = queue.withLock { state in
            if let epoch, epoch != state.epoch {
                return .some(StoreError("its change was undone: the journal could not be written (\(state.statistics.lastError ?? "unknown cause"))"))
            }
            if state.durable >= ticket { return .some(nil) }
            if let failed = state.failed { return .some(StoreError(failed)) }
            return nil
        }
        if let settled {
            if let error = settled { throw error }
            return
        }
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome: Result<Void, StoreError>? = queue.withLock { state in
                    if state.durable >= ticket { return .success(()) }
                    if let failed = state.failed { return .failure(StoreError(failed)) }
                    state.waiters.append((ticket, continuation))
                    return nil
                }
                switch outcome {
                case .success?: continuation.resume()
                case .failure(let error)?: continuation.resume(throwing: error)
                case nil: break
                }
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError("\(error)")
        }
    }

    public var statistics: Statistics { queue.withLock { $0.statistics } }

    /// Commits what is queued, stops the writer and closes the database.
    public func close() {
        let alreadyClosing = queue.withLock { state -> Bool in
            defer { state.closing = true }
            return state.closing
        }
        if alreadyClosing { return }
        wake.lock()
        wake.signal()
        wake.unlock()
        if writer != nil {
            while !queue.withLock({ $0.closed }) { usleep(1000) }
        }
        database.close()
        mark.close()
        lock.release()
    }

    /// After a failed commit, once the caller has reloaded its state from the journal (which
    /// holds exactly what was committed): refuses every ticket handed out so far that is not
    /// durable, and starts a new epoch, so that replies of requests that straddled the reload
    /// are refused too. Appends stay refused until `retryAfterFailure()` succeeds.
    public func discardRefused() {
        queue.withLock { state in
            state.durable = state.appended
            state.epoch += 1
        }
    }

    /// After a failed commit: tries one small commit. On success the journal takes appends
    /// again (returns true); else the failure stays, with its latest cause. Call only while
    /// `failure` is set (the writer is idle then: it drops everything).
    public func retryAfterFailure() -> Bool {
        guard queue.withLock({ $0.failed != nil }) else { return true }
        let next = queue.withLock { $0.commit } + 1
        do {
            try database.rollbackIfInTransaction()
            try database.execute("BEGIN")
            try database.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('commit', '\(next)')")
            try database.execute("COMMIT")
        } catch {
            try? database.execute("ROLLBACK")
            queue.withLock { $0.statistics.lastError = "cannot write the coordinator's journal at \(path): \(error)" }
            return false
        }
        mark.record(next, nextID: queue.withLock { $0.nextID })
        queue.withLock { state in
            state.commit = next
            state.failed = nil
            state.statistics.commits += 1
        }
        return true
    }

    // MARK: Writer

    func writeLoop() {
        var statements: Statements
        do {
            statements = try Statements(database)
        } catch {
            fail("cannot prepare the journal's statements: \(error)")
            queue.withLock { $0.closed = true }
            return
        }
        while true {
            wake.lock()
            // Idle, it still wakes now and then to give free pages back (a drain ends idle).
            while queue.withLock({ $0.pending.isEmpty && !$0.closing }) {
                if !wake.wait(until: Date(timeIntervalSinceNow: max(0.05, Double(vacuumInterval.components.seconds)))) { break }
            }
            wake.unlock()
            let (batch, nextID, ticket, closing) = queue.withLock { state in
                defer { state.pending = [] }
                return (state.pending, state.nextID, state.appended, state.closing)
            }
            if !batch.isEmpty {
                let clock = ContinuousClock()
                let started = clock.now
                let commit = queue.withLock { $0.commit } + 1
                do {
                    try database.execute("BEGIN")
                    for record in batch { try statements.apply(record) }
                    try statements.setNextID(nextID)
                    try statements.setCommit(commit)
                    try database.execute("COMMIT")
                    // After the commit, never before: the side file is never ahead.
                    mark.record(commit, nextID: nextID)
                } catch {
                    try? database.execute("ROLLBACK")
                    fail("cannot write the coordinator's journal at \(path): \(error)")
                }
                let elapsed = clock.now - started
                let waiters = queue.withLock { state -> [CheckedContinuation<Void, any Error>] in
                    guard state.failed == nil else { return [] }
                    state.commit = commit
                    state.durable = ticket
                    state.statistics.commits += 1
                    state.statistics.records += UInt64(batch.count)
                    state.statistics.commitMicros += elapsed.inMicroseconds
                    let ready = state.waiters.filter { $0.ticket <= ticket }.map(\.continuation)
                    state.waiters.removeAll { $0.ticket <= ticket }
                    return ready
                }
                for waiter in waiters { waiter.resume() }
            }
            vacuumIfMostlyFree()
            if closing && queue.withLock({ $0.pending.isEmpty }) {
                statements.finalize()
                queue.withLock { $0.closed = true }
                return
            }
        }
    }

    /// When the writer last looked at the file's free pages, and how often it looks (set
    /// before `start`).
    var vacuumCheckedAt = ContinuousClock.now
    public var vacuumInterval: Duration = .seconds(10)
    /// Free pages handed back per step, so a step never holds the writer up for long.
    static let vacuumPagesPerStep = 4096

    /// Every `vacuumInterval`: when more than half of a file of over 1,024 pages is free (rows deleted as
    /// results went), hands free pages back to the file system, a bounded step at a time, and
    /// cuts the WAL back, so that the journal of a drained million tasks does not stay 128 MB.
    func vacuumIfMostlyFree() {
        let now = ContinuousClock.now
        guard now - vacuumCheckedAt >= vacuumInterval, queue.withLock({ $0.failed == nil }) else { return }
        vacuumCheckedAt = now
        do {
            guard let pages = try database.scalarText("PRAGMA page_count").flatMap(Int.init),
                  let free = try database.scalarText("PRAGMA freelist_count").flatMap(Int.init),
                  pages > 1024, free * 2 > pages else { return }
            try database.execute("PRAGMA incremental_vacuum(\(Self.vacuumPagesPerStep))")
            try database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            // Soon again while there is more to give back.
            if free > Self.vacuumPagesPerStep { vacuumCheckedAt = now - vacuumInterval }
        } catch {
            // Not a commit: nothing refused. The next look tries again.
            queue.withLock { $0.statistics.lastError = "cannot shrink the journal at \(path): \(error)" }
        }
    }

    /// The journal's size in pages and its free pages (for tests of vacuuming).
    public func pageCounts() throws(StoreError) -> (pages: Int, free: Int) {
        (try database.scalarText("PRAGMA page_count").flatMap(Int.init) ?? 0,
         try database.scalarText("PRAGMA freelist_count").flatMap(Int.init) ?? 0)
    }

    func fail(_ reason: String) {
        let waiters = queue.withLock { state -> [CheckedContinuation<Void, any Error>] in
            state.failed = reason
            state.statistics.lastError = reason
            state.statistics.failedCommits += 1
            // Queued after the failed batch: refused with it, never written later.
            state.pending = []
            defer { state.waiters = [] }
            return state.waiters.map(\.continuation)
        }
        for waiter in waiters { waiter.resume(throwing: StoreError(reason)) }
    }
}

