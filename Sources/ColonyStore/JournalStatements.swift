import CSQLite
import ColonyCore
import ColonyModel
import Foundation
import Synchronization

/// The writer's prepared statements, one per kind of record.
struct Statements {
    let database: Database
    let insertTask: Statement
    let finishTask: Statement
    let deleteTask: Statement
    let upsertCounter: Statement
    let upsertLimit: Statement
    let setMeta: Statement
    let insertCounterKey: Statement
    let deleteCounterKey: Statement
    let upsertHighWater: Statement
    let setCommitNumber: Statement
    let jobs: JobStatements

    init(_ database: Database) throws(StoreError) {
        self.database = database
        jobs = try JobStatements(database)
        insertTask = try database.prepare("""
            INSERT OR REPLACE INTO tasks(id, session, handler, input, priority, uses, after, max_attempts, retry_on_error,
                                         timeout, labels, pool, pool_handler, key, detached, job, resources)
            VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
            """)
        finishTask = try database.prepare("""
            UPDATE tasks SET outcome = ?2, attempt = ?3, output = ?4, error = ?5, node = ?6, run_micros = ?7 WHERE id = ?1
            """)
        deleteTask = try database.prepare("DELETE FROM tasks WHERE id = ?1")
        upsertCounter = try database.prepare("INSERT OR REPLACE INTO counters(name, value) VALUES(?1, ?2)")
        upsertLimit = try database.prepare("INSERT OR REPLACE INTO limits(name, size) VALUES(?1, ?2)")
        setMeta = try database.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES('next_id', ?1)")
        insertCounterKey = try database.prepare("INSERT OR REPLACE INTO counter_keys(key, value, swapped) VALUES(?1, ?2, ?3)")
        deleteCounterKey = try database.prepare("DELETE FROM counter_keys WHERE key = ?1")
        upsertHighWater = try database.prepare("INSERT OR REPLACE INTO limit_high_water(name, value) VALUES(?1, ?2)")
        setCommitNumber = try database.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES('commit', ?1)")
    }

    func apply(_ record: JournalRecord) throws(StoreError) {
        switch record {
        case .submitted(let id, let submission, let session):
            let options = submission.options
            let statement = insertTask
            statement.bind(1, Int64(bitPattern: id))
            statement.bind(2, session)
            statement.bind(3, submission.handler)
            statement.bind(4, submission.input)
            statement.bind(5, Int64(options.priority))
            statement.bind(6, Strings.encode(options.uses))
            statement.bind(7, IDs.encode(options.after))
            statement.bind(8, Int64(options.maxAttempts))
            statement.bind(9, Int64(options.retryOnError ? 1 : 0))
            if let timeout = options.timeoutSeconds { statement.bind(10, timeout) } else { statement.bindNull(10) }
            statement.bind(11, Strings.encode(options.requiredLabels.sorted { $0.key < $1.key }.flatMap { [$0.key, $0.value] }))
            statement.bind(12, options.pool.rawValue)
            if let poolHandler = submission.poolHandler { statement.bind(13, poolHandler) } else { statement.bindNull(13) }
            if let key = submission.key { statement.bind(14, key) } else { statement.bindNull(14) }
            statement.bind(15, Int64(submission.detached ? 1 : 0))
            statement.bind(16, Int64(bitPattern: submission.job))
            // One `cpus=2,gpus=0.5` per variant: exact decimals, read back by ResourceVariant.parse.
            if options.resources.isEmpty { statement.bindNull(17) } else { statement.bind(17, Strings.encode(options.resources.map(\.description))) }
            try statement.run()
        case .finished(let outcome):
            let statement = finishTask
            statement.bind(1, Int64(bitPattern: outcome.id))
            statement.bind(2, outcome.cancelled ? "cancelled" : outcome.succeeded ? "succeeded"
                                : outcome.failure.map { "failed:\($0.rawValue)" } ?? "failed")
            statement.bind(3, Int64(outcome.attempt))
            statement.bind(4, outcome.output)
            statement.bind(5, outcome.error)
            statement.bind(6, outcome.node)
            statement.bind(7, Int64(bitPattern: outcome.runMicros))
            try statement.run()
        case .removed(let id):
            deleteTask.bind(1, Int64(bitPattern: id))
            try deleteTask.run()
        case .counter(let name, let value):
            upsertCounter.bind(1, name)
            upsertCounter.bind(2, value)
            try upsertCounter.run()
        case .limit(let name, let size):
            upsertLimit.bind(1, name)
            upsertLimit.bind(2, Int64(size))
            try upsertLimit.run()
        case .counterKey(let key, let reply):
            insertCounterKey.bind(1, key)
            insertCounterKey.bind(2, reply.value)
            insertCounterKey.bind(3, Int64(reply.swapped ? 1 : 0))
            try insertCounterKey.run()
        case .limitHighWater(let name, let value):
            upsertHighWater.bind(1, name)
            upsertHighWater.bind(2, Int64(value))
            try upsertHighWater.run()
        case .counterKeyForgotten(let key):
            deleteCounterKey.bind(1, key)
            try deleteCounterKey.run()
        case .jobMade, .jobCancelled, .jobForgotten, .delivered:
            try jobs.apply(record)
        }
    }

    func setNextID(_ id: TaskID) throws(StoreError) {
        setMeta.bind(1, String(id))
        try setMeta.run()
    }

    func setCommit(_ commit: UInt64) throws(StoreError) {
        setCommitNumber.bind(1, String(commit))
        try setCommitNumber.run()
    }

    func finalize() {
        for statement in [insertTask, finishTask, deleteTask, upsertCounter, upsertLimit, setMeta, insertCounterKey, deleteCounterKey,
                          upsertHighWater, setCommitNumber] {
            statement.finalize()
        }
        jobs.finalize()
    }
}
