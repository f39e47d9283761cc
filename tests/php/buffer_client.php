<?php
// The seeds' buffer client (shared/seeds/001_*.txt), made runnable: connect, read the greeting,
// write each line, read its reply.  The article reads replies with
// `while ($buffer = socket_read($socket, 1024, PHP_NORMAL_READ))`, which never ends: the server
// keeps the connection open for more lines.  Here exactly one reply is read per line sent, every
// read has a 5 s timeout, and the greeting and replies are printed one per line.
// Usage: php buffer_client.php HOST PORT [--crlf] [LINE ...]
$host = $argv[1];
$port = (int)$argv[2];
$lines = array_slice($argv, 3);
$ending = "\n";
if (($lines[0] ?? "") === "--crlf") {   // end lines "\r\n" as the article's client does
    $ending = "\r\n";
    array_shift($lines);
}

function read_line($socket) {
    // PHP_NORMAL_READ stops at "\r" or "\n"; a "\r\n" ending comes as "...\r" then "\n".
    $data = socket_read($socket, 1024, PHP_NORMAL_READ);
    if ($data === false || $data === "") {
        fwrite(STDERR, "no line: " . socket_strerror(socket_last_error($socket)) . "\n");
        exit(1);
    }
    if (substr($data, -1) === "\r") {
        socket_read($socket, 1, PHP_BINARY_READ);   // the "\n"
    }
    return rtrim($data, "\r\n");
}

$socket = socket_create(AF_INET, SOCK_STREAM, SOL_TCP);
socket_set_option($socket, SOL_SOCKET, SO_RCVTIMEO, ["sec" => 5, "usec" => 0]);
if (!socket_connect($socket, $host, $port)) {
    fwrite(STDERR, "cannot connect: " . socket_strerror(socket_last_error($socket)) . "\n");
    exit(1);
}
echo read_line($socket) . "\n";
foreach ($lines as $line) {
    socket_write($socket, $line . $ending);
    echo read_line($socket) . "\n";
}
socket_close($socket);
