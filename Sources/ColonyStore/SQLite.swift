import CSQLite
import Foundation

/// SQLite copies bound text and blobs (SQLITE_TRANSIENT, a macro Swift cannot import).
private let transient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)

/// One SQLite connection. The only place (with `Statement`) that touches SQLite's pointers.
final class Database: @unchecked Sendable {
    private var handle: OpaquePointer?

    init(path: String) throws(StoreError) {
        var opened: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX
        let rc = sqlite3_open_v2(path, &opened, flags, nil)
        guard rc == SQLITE_OK, let opened else {
            let reason = opened.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_close(opened)
            throw StoreError("cannot open \(path): \(reason)")
        }
        handle = opened
        sqlite3_busy_timeout(opened, 5000)
        // A file that is not a database fails on its first statement: say so plainly.
        do {
            try execute("SELECT count(*) FROM sqlite_master")
        } catch {
            close()
            throw StoreError("\(path) is not a Colony state file (\(error))")
        }
    }

    var message: String { handle.map { String(cString: sqlite3_errmsg($0)) } ?? "database closed" }

    func execute(_ sql: String) throws(StoreError) {
        var error: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(handle, sql, nil, nil, &error) == SQLITE_OK else {
            let reason = error.map { String(cString: $0) } ?? message
            sqlite3_free(error)
            throw StoreError(reason)
        }
    }

    func prepare(_ sql: String) throws(StoreError) -> Statement {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
            throw StoreError("cannot prepare '\(sql.prefix(60))': \(message)")
        }
        return Statement(statement, database: self)
    }

    /// The first column of the first row, as text (nil: no row or NULL).
    func scalarText(_ sql: String) throws(StoreError) -> String? {
        let statement = try prepare(sql)
        defer { statement.finalize() }
        guard try statement.step() else { return nil }
        let row = Row(statement: statement)
        return row.isNull(0) ? nil : row.text(0)
    }

    func forEachRow(_ sql: String, _ body: (Row) throws(StoreError) -> Void) throws(StoreError) {
        let statement = try prepare(sql)
        defer { statement.finalize() }
        while try statement.step() { try body(Row(statement: statement)) }
    }

    /// Ends a transaction a failed statement left open (SQLite keeps some open after an
    /// I/O error), so the next BEGIN can start.
    func rollbackIfInTransaction() throws(StoreError) {
        if let handle, sqlite3_get_autocommit(handle) == 0 { try execute("ROLLBACK") }
    }

    func close() {
        if let handle { sqlite3_close_v2(handle) }
        handle = nil
    }
}

/// A prepared statement, reused: bind, `run` (which resets it).
final class Statement: @unchecked Sendable {
    fileprivate let pointer: OpaquePointer
    private unowned let database: Database

    fileprivate init(_ pointer: OpaquePointer, database: Database) {
        self.pointer = pointer
        self.database = database
    }

    func bind(_ index: Int32, _ value: Int64) { sqlite3_bind_int64(pointer, index, value) }
    func bind(_ index: Int32, _ value: Double) { sqlite3_bind_double(pointer, index, value) }
    func bind(_ index: Int32, _ value: String) { sqlite3_bind_text(pointer, index, value, -1, transient) }
    func bind(_ index: Int32, _ value: [UInt8]) {
        value.withUnsafeBytes { bytes in
            // A zero-length blob still needs a non-null pointer, else SQLite stores NULL.
            _ = sqlite3_bind_blob(pointer, index, bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(bytes.count), transient)
        }
    }
    func bindNull(_ index: Int32) { sqlite3_bind_null(pointer, index) }

    /// Runs a statement that returns no rows, then resets it for the next use.
    func run() throws(StoreError) {
        let rc = sqlite3_step(pointer)
        sqlite3_reset(pointer)
        sqlite3_clear_bindings(pointer)
        guard rc == SQLITE_DONE || rc == SQLITE_ROW else { throw StoreError(database.message) }
    }

    /// Steps to the next row; false when there is none.
    func step() throws(StoreError) -> Bool {
        switch sqlite3_step(pointer) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw StoreError(database.message)
        }
    }

    func finalize() { sqlite3_finalize(pointer) }
}

/// The current row of a statement being stepped.
struct Row {
    fileprivate let statement: Statement

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(statement.pointer, column) == SQLITE_NULL }
    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(statement.pointer, column) }
    func double(_ column: Int32) -> Double { sqlite3_column_double(statement.pointer, column) }
    func text(_ column: Int32) -> String {
        guard let text = sqlite3_column_text(statement.pointer, column) else { return "" }
        return String(cString: text)
    }
    func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(statement.pointer, column))
        guard count > 0, let bytes = sqlite3_column_blob(statement.pointer, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: bytes, count: count))
    }
}
