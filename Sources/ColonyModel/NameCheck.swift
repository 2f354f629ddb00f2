/// Names users and nodes choose (handlers, labels, limits, counters, nodes, sessions) end up
/// in error texts, status output and log lines. A control character there would split one
/// log event into several, or drive the reader's terminal (ESC), so the core refuses them
/// where it bounds a name's length.
public enum NameCheck {
    /// Whether `text` holds a control character: Unicode general category Cc, which is
    /// exactly U+0000-U+001F and U+007F-U+009F (newline, tab, ESC, NUL, DEL, C1 controls).
    public static func containsControlCharacter(_ text: String) -> Bool {
        text.unicodeScalars.contains { $0.value < 0x20 || ($0.value >= 0x7F && $0.value <= 0x9F) }
    }

    /// `text` with every control character written as an escape (`\n`, `\t`, `\r`, `\0`,
    /// else `\u{1B}`), so that it prints on one line and shows what was given.
    public static func escaped(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            case "\0": result += "\\0"
            case "\\": result += "\\\\"
            case _ where scalar.value < 0x20 || (scalar.value >= 0x7F && scalar.value <= 0x9F):
                result += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

}
