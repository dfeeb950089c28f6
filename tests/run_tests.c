/* run_tests.c - the one CUnit runner; registers every tests/test_<name>.c
 * through its init_<name>_tests(). */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void usage(void)
{
	puts("usage: run-tests [--vectors DIR] [--data DIR] [--bin DIR] "
	     "[--quick] [--suite NAME] [--test NAME]\n"
	     "Runs every CUnit suite of sessionwire.\n"
	     "  --vectors DIR  the SDK vectors (tests/vectors)\n"
	     "  --data DIR     test data (tests/data)\n"
	     "  --bin DIR      where session-codec, session-gateway and\n"
	     "                 fake-upstream are (build)\n"
	     "  --quick        smaller exhaustive loops (for valgrind)\n"
	     "  --suite NAME   run only suites whose name contains NAME\n"
	     "  --test NAME    run only tests whose name contains NAME");
}

int main(int argc, char **argv)
{
	const char *only = NULL, *only_test = NULL;
	unsigned failed;
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--vectors") && i + 1 < argc)
			tu_vectors_dir = argv[++i];
		else if (!strcmp(argv[i], "--data") && i + 1 < argc)
			tu_data_dir = argv[++i];
		else if (!strcmp(argv[i], "--bin") && i + 1 < argc)
			tu_bin_dir = argv[++i];
		else if (!strcmp(argv[i], "--suite") && i + 1 < argc)
			only = argv[++i];
		else if (!strcmp(argv[i], "--test") && i + 1 < argc)
			only_test = argv[++i];
		else if (!strcmp(argv[i], "--quick"))
			tu_quick = 1;
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage();
			return 0;
		} else {
			usage();
			return 2;
		}
	}
	/* the vectors are the first tests: without them most suites would
	 * fail one by one for the same reason */
	{
		char probe[1024];
		FILE *f;

		snprintf(probe, sizeof(probe), "%s/typical.jsonl", tu_vectors_dir);
		f = fopen(probe, "r");
		if (f == NULL) {
			fprintf(stderr, "run-tests: the SDK vectors are not in %s "
				"(cannot read %s); give --vectors DIR (make test "
				"VECTORS=DIR)\n", tu_vectors_dir, probe);
			return 2;
		}
		fclose(f);
	}
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
#define SW_TEST_SUITE(name)                                                   \
	if ((only == NULL || strstr(#name, only)) &&                          \
	    init_##name##_tests() != 0) {                                    \
		fprintf(stderr, "cannot register suite %s\n", #name);         \
		CU_cleanup_registry();                                        \
		return 2;                                                     \
	}
#include "test_list.h"
#undef SW_TEST_SUITE
	if (only_test != NULL) {
		CU_pSuite su;
		CU_pTest t;

		CU_set_fail_on_inactive(CU_FALSE);
		for (su = CU_get_registry()->pSuite; su; su = su->pNext) {
			bool any = false;

			for (t = su->pTest; t; t = t->pNext) {
				bool on = strstr(t->pName, only_test) != NULL;

				CU_set_test_active(t, on ? CU_TRUE : CU_FALSE);
				any |= on;
			}
			if (!any)
				CU_set_suite_active(su, CU_FALSE);
		}
	}
	CU_basic_set_mode(CU_BRM_NORMAL);
	CU_basic_run_tests();
	/* a suite whose set-up failed ran none of its tests: that fails too */
	failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed() +
		 CU_get_number_of_suites_failed();
	if (CU_get_number_of_tests_run() == 0) {
		fprintf(stderr, "no test ran\n");
		failed = 1;
	}
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
