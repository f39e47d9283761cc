/* shm_counter: add to a shared 8-byte counter under a SysV semaphore, as Python does.
 *
 *   shm_counter SHM_KEY SEM_KEY COUNT
 *
 * Opens (never creates) the shared memory segment SHM_KEY and the semaphore set
 * SEM_KEY, then COUNT times: take semaphore 0 (semop -1, SEM_UNDO), add 1 to the
 * native-endian uint64 at offset 0 of the segment, give the semaphore back
 * (semop +1, SEM_UNDO).  That is what ipclab's Mutex and Segment do, so this
 * program and Python processes can share one counter and one lock by key.
 * Keys are decimal or 0x-hex.  Every wait has a timeout (semtimedop, 10 s), so
 * the program never hangs.  Exit codes: 0 done, 1 system call failed, 2 usage.
 *
 * Build: cc -O2 -Wall -o shm_counter shm_counter.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <time.h>

static long parse(const char *text, const char *what, long low, long high)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 0);
    if (errno || *end || end == text || value < low || value > high) {
        fprintf(stderr, "shm_counter: %s must be a number between %ld and %ld, got '%s'\n",
                what, low, high, text);
        exit(2);
    }
    return value;
}

static void change(int semid, short delta)
{
    struct sembuf op = {0, delta, SEM_UNDO};
    struct timespec wait = {10, 0};
    while (semtimedop(semid, &op, 1, &wait) == -1) {
        if (errno == EINTR)
            continue;
        fprintf(stderr, "shm_counter: semop(%+d) on semaphore set %d failed: %s\n", delta,
                semid, errno == EAGAIN ? "not acquired within 10 s" : strerror(errno));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s SHM_KEY SEM_KEY COUNT\n", argv[0]);
        return 2;
    }
    key_t shm_key = (key_t)parse(argv[1], "SHM_KEY", -2147483648L, 2147483647L);
    key_t sem_key = (key_t)parse(argv[2], "SEM_KEY", -2147483648L, 2147483647L);
    long count = parse(argv[3], "COUNT", 0, 1000000000L);

    int shmid = shmget(shm_key, 0, 0);          /* open only: no IPC_CREAT */
    if (shmid == -1) {
        fprintf(stderr, "shm_counter: shmget(0x%08x): %s\n", (unsigned)shm_key, strerror(errno));
        return 1;
    }
    int semid = semget(sem_key, 0, 0);          /* open only: no IPC_CREAT */
    if (semid == -1) {
        fprintf(stderr, "shm_counter: semget(0x%08x): %s\n", (unsigned)sem_key, strerror(errno));
        return 1;
    }
    struct shmid_ds info;
    if (shmctl(shmid, IPC_STAT, &info) == -1 || info.shm_segsz < sizeof(uint64_t)) {
        fprintf(stderr, "shm_counter: the segment must hold at least 8 bytes\n");
        return 1;
    }
    volatile uint64_t *counter = shmat(shmid, NULL, 0);
    if (counter == (void *)-1) {
        fprintf(stderr, "shm_counter: shmat: %s\n", strerror(errno));
        return 1;
    }
    for (long i = 0; i < count; i++) {
        change(semid, -1);                      /* acquire */
        *counter = *counter + 1;                /* read, modify, write */
        change(semid, +1);                      /* release */
    }
    shmdt((const void *)counter);
    printf("shm_counter: %ld increments done\n", count);
    return 0;
}
