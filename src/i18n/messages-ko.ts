/**
 * Korean messages: the default language. Keys are grouped by page (`nav.`, `runs.`, `receipt.`…);
 * `{name}` is a placeholder, `{n|one|other}` an English-style plural (Korean text rarely needs it).
 * Every key here must also be in messages-en.ts (the type checker enforces it).
 */
export const ko = {
  // Shared by every dashboard page
  'app.name': '현금영수증 발급',
  'nav.runs': '정산 실행',
  'nav.search': '검색',
  'nav.totals': '기간 합계',
  'nav.audit': '작업 기록',
  'nav.queues': '큐 (Bull Board)',
  'nav.metrics': '지표',
  'nav.language': '언어',
  'common.all': '전체',
  'common.none': '없음',
  'common.notFound': '찾을 수 없음',
  'common.nothingHere': '페이지가 없습니다.',
  'common.noRun': '해당 번호의 정산 실행이 없습니다.',
  'common.noTransaction': '해당 거래가 없습니다.',
  'common.backToRuns': '정산 실행 목록',
  'audit.time': '시각 (한국시간)',
  'audit.actor': '작업자',
  'audit.action': '작업',
  'audit.selectors': '대상',
  'audit.counts': '건수',
  // Printable receipt (src/report/printable-receipt.ts)
  'print.title': '현금영수증',
  'print.cancelled': '취소',
  'print.partlyCancelled': '부분취소',
  'print.merchant': '가맹점',
  'print.businessNumber': '사업자번호',
  'print.approval': '승인번호',
  'print.tradedAt': '거래일시',
  'print.issuedAt': '발급일시',
  'print.purpose': '거래구분',
  'print.selfIssued': '자진발급',
  'print.identifier': '식별번호',
  'print.supply': '공급가액',
  'print.vat': '부가세',
  'print.taxFree': '면세',
  'print.serviceFee': '봉사료',
  'print.cancelledAmount': '취소금액',
  'print.total': '합계',
  'print.order': '주문',
  'print.providerReceipt': '발급사 영수증 보기',
  'print.printedAt': '출력',
  'print.helpline': '현금영수증 문의 국번없이 126',
  'print.noneIssued': '발급된 현금영수증이 없습니다 ({id}).',
  'print.print': '인쇄',
  'purpose.deduction': '소득공제',
  'purpose.expense': '지출증빙',
} as const

export type MessageKey = keyof typeof ko
