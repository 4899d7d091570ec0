import Foundation

/// A one-file HTTP/1.1 server on 127.0.0.1 for the download tests: answers every GET with what
/// `behaviour` says, on its own thread, until stopped.
final class LoopbackServer: @unchecked Sendable {
    enum Behaviour {
        /// 200 with the whole body.
        case serve(Data)
        /// 200 announcing the whole body, then only its first `bytes`, then the connection closes.
        case truncate(Data, after: Int)
        /// A bare status (e.g. 500) with an empty body.
        case status(Int)
    }

    let port: UInt16
    private let socket: Int32
    private let behaviour: Behaviour
    private let lock = NSLock()
    private var served = 0

    /// Requests answered so far.
    var requests: Int { lock.withLock { served } }

    var url: URL { URL(string: "http://127.0.0.1:\(port)/models")! }

    init(_ behaviour: Behaviour) throws {
        self.behaviour = behaviour
        (socket, port) = try Self.listen()
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    func stop() {
        shutdown(socket, Int32(SHUT_RDWR))
        close(socket)
    }

    /// A port nothing listens on (bound once, then closed): connecting is refused at once.
    static func closedPort() throws -> UInt16 {
        let (fd, port) = try listen()
        close(fd)
        return port
    }

    private static func listen() throws -> (Int32, UInt16) {
        let fd = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound, Foundation.listen(fd, 8) == 0 else {
            close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    private func acceptLoop() {
        while true {
            let client = accept(socket, nil, nil)
            if client < 0 { return }  // stopped
            answer(client)
            close(client)
        }
    }

    private func answer(_ client: Int32) {
        var request = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !request.suffix(4).elementsEqual("\r\n\r\n".utf8) {
            let n = read(client, &buffer, buffer.count)
            if n <= 0 { return }
            request += buffer[0..<n]
        }
        lock.withLock { served += 1 }
        switch behaviour {
        case let .serve(body): send(client, header: 200, length: body.count, body: body)
        case let .truncate(body, after): send(client, header: 200, length: body.count, body: body.prefix(after))
        case let .status(code): send(client, header: code, length: 0, body: Data())
        }
    }

    private func send(_ client: Int32, header status: Int, length: Int, body: Data) {
        let head = "HTTP/1.1 \(status) \(status == 200 ? "OK" : "Error")\r\nContent-Length: \(length)\r\nConnection: close\r\n\r\n"
        var bytes = Data(head.utf8)
        bytes.append(body)
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(client, raw.baseAddress! + offset, raw.count - offset)
                if n <= 0 { return }
                offset += n
            }
        }
    }
}
