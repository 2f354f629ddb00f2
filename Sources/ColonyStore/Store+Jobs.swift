import ColonyCore
import ColonyModel

/// Jobs in the journal: a row per job held (`jobs`), the job of each task row (`tasks.job`),
/// and whether a task's result was handed out to its session while its job still keeps it
/// (`tasks.delivered`). A job's delivered rows go with the job.
enum JobTables {
    /// Tables and columns jobs add within format 1 (an older coordinator ignores them).
    static func create(in database: Database) throws(StoreError) {
        try database.execute("""
            CREATE TABLE IF NOT EXISTS jobs(id INTEGER PRIMARY KEY, name TEXT, detached INTEGER NOT NULL, cancelled INTEGER NOT NULL);
            """)
        if try database.scalarText("SELECT count(*) FROM pragma_table_info('tasks') WHERE name = 'job'") == "0" {
            try database.execute("ALTER TABLE tasks ADD COLUMN job INTEGER NOT NULL DEFAULT 0")
        }
        if try database.scalarText("SELECT count(*) FROM pragma_table_info('tasks') WHERE name = 'delivered'") == "0" {
            try database.execute("ALTER TABLE tasks ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0")
        }
    }

    /// The jobs held and the next job id.
    static func recover(from database: Database, into state: inout RecoveredState) throws(StoreError) {
        if let next = try database.scalarText("SELECT value FROM meta WHERE key = 'next_job_id'"), let id = JobID(next) { state.nextJobID = id }
        try database.forEachRow("SELECT id, name, detached, cancelled FROM jobs ORDER BY id") { row in
            state.jobs.append(RecoveredJob(id: JobID(bitPattern: row.int64(0)), name: row.isNull(1) ? nil : row.text(1),
                                           detached: row.int64(2) != 0, cancelled: row.int64(3) != 0))
        }
        if let last = state.jobs.last { state.nextJobID = max(state.nextJobID, last.id + 1) }
    }
}

/// The writer's prepared statements for job records.
struct JobStatements {
    let upsertJob: Statement
    let cancelJob: Statement
    let freeOutputs: Statement
    let deleteJob: Statement
    let deleteDelivered: Statement
    let markDelivered: Statement
    let setNextJobID: Statement

    init(_ database: Database) throws(StoreError) {
        upsertJob = try database.prepare("INSERT OR REPLACE INTO jobs(id, name, detached, cancelled) VALUES(?1, ?2, ?3, ?4)")
        cancelJob = try database.prepare("UPDATE jobs SET cancelled = 1 WHERE id = ?1")
        freeOutputs = try database.prepare("UPDATE tasks SET output = x'' WHERE job = ?1 AND output IS NOT NULL")
        deleteJob = try database.prepare("DELETE FROM jobs WHERE id = ?1")
        deleteDelivered = try database.prepare("DELETE FROM tasks WHERE job = ?1 AND delivered = 1")
        markDelivered = try database.prepare("UPDATE tasks SET delivered = 1 WHERE id = ?1")
        setNextJobID = try database.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES('next_job_id', ?1)")
    }

    func apply(_ record: JournalRecord) throws(StoreError) {
        switch record {
        case .jobMade(let job):
            upsertJob.bind(1, Int64(bitPattern: job.id))
            if let name = job.name { upsertJob.bind(2, name) } else { upsertJob.bindNull(2) }
            upsertJob.bind(3, Int64(job.detached ? 1 : 0))
            upsertJob.bind(4, Int64(job.cancelled ? 1 : 0))
            try upsertJob.run()
            // Ids are never reused, also after the job's row is gone.
            setNextJobID.bind(1, String(job.id + 1))
            try setNextJobID.run()
        case .jobCancelled(let id):
            cancelJob.bind(1, Int64(bitPattern: id))
            try cancelJob.run()
            freeOutputs.bind(1, Int64(bitPattern: id))
            try freeOutputs.run()
        case .jobForgotten(let id):
            deleteJob.bind(1, Int64(bitPattern: id))
            try deleteJob.run()
            deleteDelivered.bind(1, Int64(bitPattern: id))
            try deleteDelivered.run()
        case .delivered(let id):
            markDelivered.bind(1, Int64(bitPattern: id))
            try markDelivered.run()
        default:
            break
        }
    }

    func finalize() {
        for statement in [upsertJob, cancelJob, freeOutputs, deleteJob, deleteDelivered, markDelivered, setNextJobID] { statement.finalize() }
    }
}
