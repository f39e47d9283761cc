<?php
// The seeds' mutex protocol: sem_get + shmop_open, then sem_acquire / write / sem_release.
// usage: php counter.php KEY COUNT  -- adds 1 to the 8-byte little-endian counter at offset 0
// of the segment KEY, COUNT times, each time inside the semaphore KEY.
[$_, $key, $count] = $argv;
$sem = sem_get((int)$key, 1, 0600);       // a set of 3; semaphore 0 starts at 1 (max_acquire)
$shm = shmop_open((int)$key, "w", 0, 0);  // "w": open an existing segment for reading and writing
if ($sem === false || $shm === false) {
    fwrite(STDERR, "cannot open the semaphore or the segment\n");
    exit(2);
}
for ($i = 0; $i < (int)$count; $i++) {
    sem_acquire($sem);
    $value = unpack("P", shmop_read($shm, 0, 8))[1];  // P: unsigned 64-bit little-endian
    shmop_write($shm, pack("P", $value + 1), 0);
    sem_release($sem);
}
echo "php done\n";
