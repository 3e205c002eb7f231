/* SHA-256 against FIPS 180-4 / NIST example vectors and split updates. */
#include <string.h>

#include "core/core.h"
#include "tests/test.h"

int main(void) {
  char hex[65];
  dpo_sha256_hex("", 0, hex);
  CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  dpo_sha256_hex("abc", 3, hex);
  CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  dpo_sha256_hex(two_blocks, strlen(two_blocks), hex);
  CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  /* One million 'a', fed in uneven pieces. */
  static char million[1000000];
  memset(million, 'a', sizeof million);
  dpo_sha256 h;
  uint8_t digest[32];
  dpo_sha256_init(&h);
  size_t done = 0, piece = 1;
  while (done < sizeof million) {
    size_t n = piece < sizeof million - done ? piece : sizeof million - done;
    dpo_sha256_update(&h, million + done, n);
    done += n;
    piece = piece * 3 % 997 + 1;
  }
  dpo_sha256_final(&h, digest);
  CHECK_INT(digest[0], 0xcd);
  CHECK_INT(digest[1], 0xc7);
  CHECK_INT(digest[31], 0xd0);
  /* 55 and 56 bytes straddle the padding boundary. */
  char fifty_six[57];
  memset(fifty_six, 'a', 56);
  dpo_sha256_hex(fifty_six, 55, hex);
  CHECK_STR(hex, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  dpo_sha256_hex(fifty_six, 56, hex);
  CHECK_STR(hex, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  CHECK_INT(test_write_file(test_path("f"), "abc", 3), 0);
  dpo_error err;
  CHECK_INT(dpo_sha256_file(test_path("f"), hex, &err), DPO_OK);
  CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK_INT(dpo_sha256_file(test_path("nope"), hex, &err), DPO_ERR_DATA);
  return test_finish();
}
