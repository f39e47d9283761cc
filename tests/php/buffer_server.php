<?php
// The seeds' "buffer" server (shared/seeds/001_*.txt), as the article writes it, made runnable:
// socket_create, socket_bind, socket_listen, then one client at a time: send the buffer (the last
// line any client stored, "no data" at first) followed by "\r\n", then for each line the client
// sends (socket_read with PHP_NORMAL_READ) store it and answer "Information Received\r\n".
//
// Changes to the article's code, each needed to run it at all or to test it:
//  - host, port and the number of clients to serve come from argv (port 0: any free port, printed);
//  - the line ending is trimmed before storing: the article stores "Some data\r", so the next
//    client's greeting would carry a stray "\r";
//  - PHP_NORMAL_READ stops at "\r" and then returns the "\n" alone; that piece is not a line;
//  - every read has a 10 s timeout (SO_RCVTIMEO) so a silent client cannot hold it forever;
//  - PHP_NORMAL_READ reports a client's orderly close as "Connection reset by peer" (it retries
//    the empty recv, then gives up with ECONNRESET): that warning is silenced with @.
// Usage: php buffer_server.php HOST PORT CLIENTS
$host = $argv[1] ?? '127.0.0.1';
$port = (int)($argv[2] ?? 0);
$clients = (int)($argv[3] ?? 1);

$socket = socket_create(AF_INET, SOCK_STREAM, SOL_TCP);
socket_set_option($socket, SOL_SOCKET, SO_REUSEADDR, 1);
if (!socket_bind($socket, $host, $port) || !socket_listen($socket)) {
    fwrite(STDERR, "cannot listen: " . socket_strerror(socket_last_error($socket)) . "\n");
    exit(1);
}
socket_getsockname($socket, $addr, $port);
echo "listening on $addr:$port\n";

$buffer = "no data";
for ($served = 0; $served < $clients; $served++) {
    $connection = socket_accept($socket);
    socket_set_option($connection, SOL_SOCKET, SO_RCVTIMEO, ["sec" => 10, "usec" => 0]);
    echo "Socket connected\n";
    socket_write($connection, $buffer . "\r\n");
    $after_cr = false;
    while (($data = @socket_read($connection, 1024, PHP_NORMAL_READ)) !== false && $data !== "") {
        if ($data === "\n" && $after_cr) {   // the rest of a "\r\n"
            $after_cr = false;
            continue;
        }
        $after_cr = substr($data, -1) === "\r";
        $buffer = rtrim($data, "\r\n");
        socket_write($connection, "Information Received\r\n");
        echo "buffer: $buffer\n";
    }
    socket_close($connection);
    echo "closed the socket\n";
}
socket_close($socket);
