import ArgumentParser
import Foundation

/// Runs `body`; a thrown error is printed as `error: …` on stderr and the process exits 1,
/// instead of a crash or an unhandled-error trace.
func fail<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as ValidationError {
        throw error
    } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}
