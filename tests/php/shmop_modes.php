<?php
// usage: php shmop_modes.php KEY  -- exercise shmop_open's four modes on a segment Python made.
$key = (int)$argv[1];
$ro = shmop_open($key, "a", 0, 0);                 // "a": read only
echo "a read: ", rtrim(shmop_read($ro, 0, 16), "\0"), "\n";
try {
    shmop_write($ro, "x", 0);
    echo "a write: allowed\n";
} catch (Error $e) {
    echo "a write: refused\n";
}
$rw = shmop_open($key, "w", 0, 0);                 // "w": read and write
shmop_write($rw, "PHP was here", 16);
echo "w size: ", shmop_size($rw), "\n";
$c = shmop_open($key, "c", 0600, 64);              // "c": create, or open if it exists
echo "c opened existing: ", $c !== false ? "yes" : "no", "\n";
$n = @shmop_open($key, "n", 0600, 64);             // "n": create only; fails if it exists
echo "n on existing: ", $n === false ? "refused" : "created", "\n";
